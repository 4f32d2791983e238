"""The consume → process → produce → commit loop (at-least-once)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import structlog
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from login_common.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_CONSUMER_VERSION,
    HEADER_DLQ_ERROR_DETAIL,
    HEADER_DLQ_ERROR_TYPE,
    HEADER_DLQ_SOURCE_OFFSET,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_TIME,
    HEADER_SCHEMA_VERSION,
    SCHEMA_VERSION,
)
from login_common.kafka import header_value, message_headers
from login_consumer import __version__
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics
from login_consumer.validate import Invalid, parse

log = structlog.get_logger("login_consumer")


class ConsumerApp:
    def __init__(self, settings: ConsumerSettings, metrics: ConsumerMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.assigned = threading.Event()
        self._consumer = Consumer(
            {
                **settings.kafka_common(),
                "group.id": settings.group_id,
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            }
        )
        self._producer = Producer(
            {**settings.kafka_common(), "enable.idempotence": True, "acks": "all", "linger.ms": 5}
        )
        self._delivery_errors = 0

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self._delivery_errors += 1

    def _dlq(self, msg: Message, why: Invalid) -> None:
        headers = message_headers(msg)
        headers += [
            (HEADER_DLQ_ERROR_TYPE, why.error_type.encode()),
            (HEADER_DLQ_ERROR_DETAIL, why.detail.encode()),
            (HEADER_DLQ_SOURCE_TOPIC, str(msg.topic()).encode()),
            (HEADER_DLQ_SOURCE_PARTITION, str(msg.partition()).encode()),
            (HEADER_DLQ_SOURCE_OFFSET, str(msg.offset()).encode()),
            (HEADER_DLQ_CONSUMER_VERSION, __version__.encode()),
            (HEADER_DLQ_TIME, str(int(time.time() * 1000)).encode()),
        ]
        self._producer.produce(
            self.settings.dlq_topic,
            value=msg.value(),
            key=msg.key(),
            headers=headers,
            on_delivery=self._on_delivery,
        )
        self.metrics.dlq.labels(why.error_type).inc()

    def _process(self, msg: Message) -> None:
        result = parse(msg.value())
        if isinstance(result, Invalid):
            self._dlq(msg, result)
            return
        correlation = header_value(msg, HEADER_CORRELATION_ID) or str(uuid.uuid4()).encode()
        out: dict[str, Any] = {
            "event_id": result.get("event_id"),
            "user_id": result["user_id"],
            "ip": result["ip"],
            "timestamp": result["timestamp"],
        }
        self._producer.produce(
            self.settings.output_topic,
            value=json.dumps(out, separators=(",", ":")).encode(),
            key=str(result["user_id"]).encode(),
            headers=[
                (HEADER_SCHEMA_VERSION, str(SCHEMA_VERSION).encode()),
                (HEADER_CORRELATION_ID, correlation),
            ],
            on_delivery=self._on_delivery,
        )
        self.metrics.processed.inc()

    def run(self, stop: threading.Event) -> None:
        def on_assign(_c: Consumer, parts: list[TopicPartition]) -> None:
            self.assigned.set()
            log.info("consumer.assigned", partitions=[p.partition for p in parts])

        self._consumer.subscribe([self.settings.input_topic], on_assign=on_assign)
        try:
            while not stop.is_set():
                batch = self._consumer.consume(self.settings.batch_size, self.settings.poll_timeout)
                if not batch:
                    continue
                started = time.perf_counter()
                good = [m for m in batch if m.error() is None]
                for msg in good:
                    self._process(msg)
                self.metrics.consumed.inc(len(good))
                remaining = self._producer.flush(30)
                if remaining or self._delivery_errors:
                    raise RuntimeError(
                        f"{remaining + self._delivery_errors} outputs not acknowledged; not committing"
                    )
                self._consumer.commit(asynchronous=False)
                per_event = (time.perf_counter() - started) / max(1, len(good))
                self.metrics.processing.observe(per_event)
        finally:
            self._producer.flush(10)
            self._consumer.close()
