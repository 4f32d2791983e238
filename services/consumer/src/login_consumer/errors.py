"""Exceptions of login-consumer: one hierarchy under ``ConsumerError`` (itself a ``LoginStreamError``).

Errors that come from a broker's answer carry it (``error``: the ``KafkaError``, or None), so that the
access policy (``operations/access.py``) can tell a refusal (an ACL, the credentials: waited out) from a
setting that can never work (exit 2).
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from login_common.errors import LoginStreamError


class ConsumerError(LoginStreamError):
    """Base class of the consumer's own errors."""

    def __init__(self, message: str, error: KafkaError | None = None) -> None:
        super().__init__(message)
        self.error = error  # the broker's answer, when it refused (e.g. TOPIC_AUTHORIZATION_FAILED)


class EnrichmentError(ConsumerError):
    """Reference data cannot be loaded, or a value cannot be enriched."""


class InternalTopicError(ConsumerError):
    """An internal topic is missing, cannot be created, or does not match its source topic (``error``: the
    broker's answer, or None for a mismatch: a setting that can never work)."""


class StateRestoreError(ConsumerError):
    """A changelog topic cannot be created, does not match its source topic, or cannot be read."""


class DeliveryError(ConsumerError):
    """The broker did not acknowledge outputs (or refused their transaction)."""


class CommitFailed(DeliveryError):  # noqa: N818 - a signal to rewind, not an error to report
    """The interval's outputs were not all delivered (or its transaction failed): nothing of it is
    committed; the caller rewinds to the last checkpoint and processes again."""
