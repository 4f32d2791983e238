"""What the Kafka clients report while the loop runs: delivery failures, commit results, client errors,
consume errors, and a detector's failure; each counted, logged at most every ``WARN_EVERY_SECONDS`` per
kind, and an access failure (authentication, authorization) handed to the access policy
(``operations/access.py``) instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, TopicPartition

from login_common.access import AUTHENTICATION, classify
from login_common.logs import Warnings
from login_consumer.metrics import ConsumerMetrics
from login_consumer.operations.access import AccessFailures

WARN_EVERY_SECONDS: Final = (
    10.0  # a warning of one kind at most this often (errors repeat while a broker is down)
)


class Events:
    def __init__(self, metrics: ConsumerMetrics, log: Any, access: AccessFailures) -> None:
        self.metrics = metrics
        self.log = log
        self.access = access
        self.delivery_failed: Callable[[KafkaError | str], None] = lambda _err: (
            None
        )  # the checkpoint's, once built
        self.produce_failed: Callable[[KafkaError], None] = lambda _err: None  # the checkpoint's, once built
        self.authentication_failed = False  # since the credentials were last looked at
        self.warn = Warnings(log, WARN_EVERY_SECONDS)  # at most once per WARN_EVERY_SECONDS per event name

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # delivery.report.only.error: called for failures only
            self.access.check(err, "produce")
            self.delivery_failed(err)
            self.metrics.errors.labels("delivery").inc()

    def on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        if err is not None or any(p.error is not None for p in partitions or []):
            self.metrics.commit_failures.inc()
            self.metrics.errors.labels("commit").inc()
            self.warn("commit.failed", error=str(err or next(p.error for p in partitions if p.error)))

    def on_error(self, err: KafkaError) -> None:
        if self.access.check(err, "client"):
            found = classify(err)
            if found is not None and found.kind == AUTHENTICATION:
                self.authentication_failed = True  # handled outside the client's callback (credentials)
            return
        self.metrics.errors.labels("kafka").inc()
        self.warn("kafka.error", error=err.str(), code=err.name(), fatal=err.fatal())

    def on_produce_refused(self, err: KafkaError) -> None:
        """The producer raised instead of queueing (refused, fatal, a transaction in error)."""
        self.produce_failed(err)
        if not self.access.check(err, "produce"):
            self.metrics.errors.labels("delivery").inc()
            self.warn("produce.failed", error=err.str(), code=err.name(), fatal=err.fatal())

    def on_consume_error(self, err: KafkaError) -> bool:
        """Count and report a consume error; True when it was a refusal."""
        if self.access.check(err, "consume"):
            return True
        self.metrics.errors.labels("kafka").inc()
        self.warn("consume.error", error=err.str(), code=err.name())
        return False

    def detector_failed(self, what: str, exc: Exception) -> None:
        err = getattr(exc, "error", None) or (exc.args[0] if isinstance(exc, KafkaException) else None)
        if isinstance(err, KafkaError) and self.access.check(err, "restore", str(exc)[:120]):
            return  # a refused restore: the state manager retries it
        self.metrics.errors.labels("processing").inc()
        self.log.error(f"detectors.{what}_failed", error=repr(exc)[:300])
