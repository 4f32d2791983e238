"""Where simulated events go: Kafka (idempotent, acks=all, batched, keyed by user) or JSON lines."""

from __future__ import annotations

import json
import time
import uuid
from typing import IO, Any, Protocol

from confluent_kafka import KafkaError, Message, Producer

from login_common.contract import (
    HEADER_ATTACK_ID,
    HEADER_CONTENT_TYPE,
    HEADER_CORRELATION_ID,
    HEADER_SCENARIO,
    HEADER_SCHEMA_VERSION,
    SCHEMA_VERSION,
)
from login_producer.metrics import ProducerMetrics
from login_producer.simulate import SimEvent


class Sink(Protocol):
    def send(self, sim: SimEvent) -> None: ...
    def close(self, timeout: float = 30.0) -> int:
        """Flush; return the number of events not delivered."""
        ...


class KafkaSink:
    def __init__(
        self,
        topic: str,
        config: dict[str, Any],
        metrics: ProducerMetrics,
        *,
        fetch_format: bool = False,
    ) -> None:
        self.topic = topic
        self.metrics = metrics
        self.fetch_format = fetch_format
        self.failed = 0
        self._producer = Producer(
            {
                "enable.idempotence": True,
                "acks": "all",
                "compression.type": "lz4",
                "linger.ms": 20,
                "batch.num.messages": 10000,
                "queue.buffering.max.messages": 500000,
                **config,
            }
        )

    def send(self, sim: SimEvent) -> None:
        payload = sim.fetch_view() if self.fetch_format else sim.event
        value = json.dumps(payload, separators=(",", ":")).encode()
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_SCHEMA_VERSION, str(SCHEMA_VERSION).encode()),
            (HEADER_CONTENT_TYPE, b"application/json"),
        ]
        if not self.fetch_format:
            headers.append((HEADER_CORRELATION_ID, str(uuid.uuid4()).encode()))
            headers.append((HEADER_SCENARIO, sim.scenario.encode()))
            if sim.attack_id:
                headers.append((HEADER_ATTACK_ID, sim.attack_id.encode()))
        sent_at = time.monotonic()

        def on_delivery(err: KafkaError | None, _msg: Message) -> None:
            if err is not None:
                self.failed += 1
                self.metrics.send_errors.labels(err.name()).inc()
            else:
                self.metrics.delivered.inc()
                self.metrics.delivery_latency.observe(time.monotonic() - sent_at)

        while True:
            try:
                self._producer.produce(
                    self.topic, value=value, key=sim.key.encode(), headers=headers, on_delivery=on_delivery
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve callbacks and retry
        self.metrics.sent.labels(sim.scenario).inc()
        self._producer.poll(0)

    def close(self, timeout: float = 30.0) -> int:
        remaining = self._producer.flush(timeout)
        return remaining + self.failed


class FileSink:
    """JSON lines; full events carry their labels in ``_label_*`` fields, fetch format carries none."""

    def __init__(self, stream: IO[str], metrics: ProducerMetrics, *, fetch_format: bool = False) -> None:
        self.stream = stream
        self.metrics = metrics
        self.fetch_format = fetch_format

    def send(self, sim: SimEvent) -> None:
        if self.fetch_format:
            record = sim.fetch_view()
        else:
            record = {**sim.event, "_label_scenario": sim.scenario, "_label_attack_id": sim.attack_id}
        self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
        self.metrics.sent.labels(sim.scenario).inc()
        self.metrics.delivered.inc()

    def close(self, timeout: float = 30.0) -> int:
        self.stream.flush()
        return 0
