"""Exceptions of login-consumer."""

from login_common.errors import LoginStreamError


class ConsumerError(LoginStreamError):
    """Base class of the consumer's own errors."""


class EnrichmentError(ConsumerError):
    """Reference data cannot be loaded, or a value cannot be enriched."""


class DeliveryError(ConsumerError):
    """The broker did not acknowledge a batch's outputs; its offsets are not committed."""
