"""Exceptions of login-producer."""

from __future__ import annotations

from login_common.errors import LoginStreamError


class ProducerError(LoginStreamError):
    """Base class of the producer's own errors."""


class SimulationError(ProducerError):
    """The simulation cannot be built (missing geolocation data, impossible parameters)."""
