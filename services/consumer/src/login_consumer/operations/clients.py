"""The Kafka clients of the consumer process: one consumer and one producer, their callbacks and logs.

librdkafka's own log lines go through structlog (``KafkaLogs``: JSON in containers) instead of raw stderr.
Their callbacks report to ``operations/events.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from confluent_kafka import Consumer, Producer

from login_common.security import read_secret_file
from login_consumer.config import ConsumerSettings
from login_consumer.operations.events import Events


class KafkaLogs:
    """librdkafka's own log lines, through structlog (JSON in containers) instead of raw stderr."""

    _METHODS: Final = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def log(self, level: int, fmt: str, *args: object) -> None:
        method = self._METHODS.get(level - level % 10, "warning")
        getattr(self._logger, method)("librdkafka", message=fmt % args if args else fmt)


class Credentials:
    """SASL_PASSWORD_FILE read again when the broker refuses the password: a fixed or rotated password (a
    Secret updated in place) reaches every live client (``set_sasl_credentials``) without a restart; new
    clients read the file themselves (``kafka_common``). ``check`` runs outside the clients' callbacks
    (librdkafka must not be re-entered from them): the loop and each start-up attempt call it."""

    def __init__(self, settings: ConsumerSettings, log: Any, events: Events) -> None:
        self._events = events
        self.user = settings.sasl_username
        self.file = settings.sasl_password_file
        self._log = log
        self._current = settings.kafka_common().get("sasl.password", "")
        self._read_at = 0.0
        self._targets: list[Callable[[str, str], None]] = []

    def track(self, target: Callable[[str, str], None]) -> None:
        """``target(user, password)`` is called with a changed password (a client's set_sasl_credentials)."""
        self._targets.append(target)

    def check(self) -> None:
        """Reload the password if an authentication failure was reported since the last look."""
        if self._events.authentication_failed:
            self._events.authentication_failed = False
            self.reload()

    def reload(self) -> None:
        now = time.monotonic()
        if not self.file or now - self._read_at < 1.0:
            return
        self._read_at = now
        try:
            password = read_secret_file(self.file, "SASL_PASSWORD_FILE")
        except ValueError as exc:
            self._log.warning("kafka.password_file_unreadable", error=str(exc))
            return
        if password == self._current:
            return
        self._current = password
        for target in self._targets:
            target(self.user, password)
        self._log.info("kafka.password_reloaded", user=self.user, file=self.file)


def clients(settings: ConsumerSettings, events: Events) -> tuple[Consumer, Producer]:
    """The consumer (of every stage's input topic) and the producer (of every output) of the process."""
    consumer = Consumer(
        {
            **settings.consumer_config(),
            "on_commit": events.on_commit,
            "error_cb": events.on_error,
            "logger": KafkaLogs(events.log),
        }
    )
    return consumer, producer(settings, events)


def producer(settings: ConsumerSettings, events: Events) -> Producer:
    """The process's producer (a new one replaces a producer with a fatal error)."""
    return Producer(
        {
            **settings.producer_config(),
            "on_delivery": events.on_delivery,
            "error_cb": events.on_error,
            "logger": KafkaLogs(events.log),
        }
    )
