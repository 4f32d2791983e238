"""Exceptions of login-producer."""

from __future__ import annotations

from login_common.errors import LoginStreamError


class ProducerError(LoginStreamError):
    """Base class of the producer's own errors."""


class SimulationError(ProducerError):
    """The simulation cannot be built (missing geolocation data, impossible parameters)."""


class SinkSettingsError(ProducerError):
    """The Kafka client rejects its settings outright: nothing the broker side can fix (exit 2)."""
