"""Where simulated events go: Kafka (idempotent, acks=all, batched, keyed by user) or JSON lines.

``DURABILITY`` is applied after every other setting (``kafka_config``): an event the broker acknowledged is
on every in-sync replica (at least min.insync.replicas of them), and a retry after a leader change never
writes it twice. While too few replicas are in sync the broker refuses the write (NOT_ENOUGH_REPLICAS):
librdkafka retries it until message.timeout.ms, the local queue fills and ``send`` blocks; an event that
still fails is counted in ``login_producer_send_errors_total`` (never silently dropped).
"""

from __future__ import annotations

import json
from typing import IO, Any, Final, Protocol

from confluent_kafka import KafkaError, Message, Producer
from prometheus_client import Counter

from login_common.contract import (
    HEADER_ATTACK_ID,
    HEADER_CONTENT_TYPE,
    HEADER_CORRELATION_ID,
    HEADER_COUNTRY,
    HEADER_SCENARIO,
    HEADER_SCHEMA_VERSION,
    HEADER_TRUTH,
    SCHEMA_VERSION,
)
from login_producer.metrics import ProducerMetrics
from login_producer.simulate import SimEvent

_dumps = json.JSONEncoder(separators=(",", ":")).encode
_SCHEMA = str(SCHEMA_VERSION).encode()
_JSON = b"application/json"


class Sink(Protocol):
    def send(self, sim: SimEvent) -> None: ...
    def close(self, timeout: float = 30.0) -> int:
        """Flush; return the number of events not delivered."""
        ...


class _SentCounters:
    """Per-scenario children of the ``sent`` counter, looked up once each."""

    def __init__(self, metrics: ProducerMetrics) -> None:
        self._metric = metrics.sent
        self._children: dict[str, Counter] = {}

    def inc(self, scenario: str, amount: int = 1) -> None:
        child = self._children.get(scenario)
        if child is None:
            child = self._children[scenario] = self._metric.labels(scenario)
        child.inc(amount)


# What no configuration may weaken (tests/unit/test_durability.py pins it).
DURABILITY: Final = {"enable.idempotence": True, "acks": "all"}


def kafka_config(config: dict[str, Any]) -> dict[str, Any]:
    """The producer's librdkafka settings: batching defaults, then ``config``, then ``DURABILITY``."""
    return {
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "queue.buffering.max.messages": 500000,
        **config,
        **DURABILITY,
    }


class KafkaSink:
    """Idempotent (acks=all) producer, batched by linger.ms, keyed by user_id; labels in headers."""

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
        self._sent = _SentCounters(metrics)
        self._delivered_count = metrics.delivered
        self._latency = metrics.delivery_latency
        self._pending = 0
        self.config = kafka_config(config)
        self._producer = Producer(self.config)

    def send(self, sim: SimEvent) -> None:
        headers: list[tuple[str, str | bytes | None]] = [
            (HEADER_SCHEMA_VERSION, _SCHEMA),
            (HEADER_CONTENT_TYPE, _JSON),
        ]
        if self.fetch_format:
            value = _dumps(sim.fetch_view()).encode()
        else:
            value = _dumps(sim.event).encode()
            headers.append((HEADER_CORRELATION_ID, str(sim.event.get("event_id", "")).encode()))
            headers.append((HEADER_SCENARIO, sim.scenario.encode()))
            headers.append((HEADER_TRUTH, ",".join(sim.truth).encode()))
            headers.append((HEADER_COUNTRY, sim.country.encode()))
            if sim.attack_id:
                headers.append((HEADER_ATTACK_ID, sim.attack_id.encode()))
        produce = self._producer.produce
        while True:
            try:
                produce(
                    self.topic,
                    value=value,
                    key=sim.key.encode(),
                    headers=headers,
                    on_delivery=self._delivered,
                )
                break
            except BufferError:
                self._producer.poll(0.05)  # local queue full: serve callbacks and retry
        self._sent.inc(sim.scenario)
        self._pending += 1
        if self._pending >= 256:  # serve delivery callbacks in batches
            self._pending = 0
            self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed += 1
            self.metrics.send_errors.labels(err.name()).inc()
            return
        self._delivered_count.inc()
        latency = msg.latency()
        if latency is not None:
            self._latency.observe(latency)

    def close(self, timeout: float = 30.0) -> int:
        remaining = self._producer.flush(timeout)
        return remaining + self.failed


class FileSink:
    """JSON lines. Full events carry their labels in a separate ``_label`` object; fetch format none."""

    def __init__(
        self, stream: IO[str], metrics: ProducerMetrics, *, fetch_format: bool = False, batch: int = 512
    ) -> None:
        self.stream = stream
        self.batch = max(1, batch)
        self.metrics = metrics
        self.fetch_format = fetch_format
        self._sent = _SentCounters(metrics)
        self._scenarios: dict[str, int] = {}  # counted here, added to the metric with each write
        self._buffer: list[str] = []
        self._write = stream.write
        self._label_json: dict[tuple[str, str | None, tuple[str, ...], str], str] = {}

    def _label_suffix(self, sim: SimEvent) -> str:
        """``,"_label":{...}}``: the label closes the event object (cached for attack-free labels)."""
        key = (sim.scenario, sim.attack_id, sim.truth, sim.country)
        suffix = self._label_json.get(key)
        if suffix is None:
            suffix = ',"_label":' + _dumps(sim.label()) + "}"
            if sim.attack_id is None:  # attack ids are unique: caching them would only grow
                self._label_json[key] = suffix
        return suffix

    def send(self, sim: SimEvent) -> None:
        if self.fetch_format:
            line = _dumps(sim.fetch_view())
        else:
            line = _dumps(sim.event)[:-1] + self._label_suffix(sim)
        buf = self._buffer
        buf.append(line)
        counts = self._scenarios
        counts[sim.scenario] = counts.get(sim.scenario, 0) + 1
        if len(buf) >= self.batch:
            self._flush_buffer()

    def _flush_buffer(self) -> None:
        if self._buffer:
            self._write("\n".join(self._buffer) + "\n")
            for scenario, n in self._scenarios.items():
                self._sent.inc(scenario, n)
            self.metrics.delivered.inc(len(self._buffer))
            self._buffer.clear()
            self._scenarios.clear()

    def close(self, timeout: float = 30.0) -> int:
        self._flush_buffer()
        self.stream.flush()
        return 0
