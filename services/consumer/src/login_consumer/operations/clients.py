"""The Kafka clients of the consumer process: one consumer and one producer, their callbacks and logs.

librdkafka's own log lines go through structlog (``KafkaLogs``: JSON in containers) instead of raw stderr.
Their callbacks report to ``operations/events.py``.
"""

from __future__ import annotations

from typing import Any, Final

from confluent_kafka import Consumer, Producer

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
