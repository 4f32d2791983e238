"""A second consumer joins mid-stream: the first commits on revocation, so nothing is lost or repeated."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from login_consumer.app import ConsumerApp
from login_consumer.detectors.base import DetectBatch, Detection, NoDetectors
from login_consumer.metrics import ConsumerMetrics
from login_consumer.records import PartitionRef
from tests.integration.conftest import consumer_settings
from tests.kafka_utils import drain, running

pytestmark = pytest.mark.integration


class RecordingDetectors(NoDetectors):
    """Records partition hand-overs; slow (0.25 ms an event) so the stream outlasts a rebalance."""

    def __init__(self) -> None:
        self.assigned: list[PartitionRef] = []
        self.revoked: list[tuple[PartitionRef, bool]] = []

    def on_assign(self, partitions: list[PartitionRef]) -> None:  # type: ignore[override]
        self.assigned.extend(partitions)

    def on_revoke(self, partitions: list[PartitionRef], *, lost: bool) -> None:  # type: ignore[override]
        self.revoked.extend((p, lost) for p in partitions)

    def detect(self, batch: DetectBatch) -> dict[int, list[Detection]]:
        time.sleep(0.00025 * len(batch.events))
        return {}


def test_commit_on_revocation(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    source = topic_factory("user-login", partitions=4)
    output = topic_factory("processed-logins", partitions=4)
    dlq = topic_factory("dlq")
    now = int(time.time())
    ids = [str(uuid.uuid4()) for _ in range(40_000)]
    producer = Producer({"bootstrap.servers": kafka, "linger.ms": 20})
    for n, event_id in enumerate(ids):
        value = orjson.dumps(
            {"event_id": event_id, "user_id": f"u{n % 300}", "ip": "8.8.8.8", "timestamp": now}
        )
        producer.produce(source, value=value, key=f"u{n % 300}".encode())
        if n % 5000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0

    settings = consumer_settings(
        kafka,
        input_topic=source,
        output_topic=output,
        dlq_topic=dlq,
        group_id=group_factory("rebalance"),
        batch_size=100,
    )
    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    first_detectors, second_detectors = RecordingDetectors(), RecordingDetectors()
    first = ConsumerApp(settings, ConsumerMetrics.create(first_registry), detectors=first_detectors)
    second = ConsumerApp(settings, ConsumerMetrics.create(second_registry), detectors=second_detectors)

    def processed(registry: CollectorRegistry) -> float:
        return registry.get_sample_value("login_consumer_events_processed_total") or 0.0

    with running(first.run, "first"):
        deadline = time.monotonic() + 60
        while processed(first_registry) < 2_000 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert processed(first_registry) < len(ids), "the first consumer finished before the second joined"
        with running(second.run, "second"):
            outputs = drain(kafka, output, expected=len(ids), timeout=90)

    got = Counter(orjson.loads(m.value())["event_id"] for m in outputs)
    assert set(got) == set(ids)
    assert sum(got.values()) == len(ids), "committed on revocation: nothing processed twice"
    # revoked twice: mid-stream when the second joined, and when it stopped
    assert first_registry.get_sample_value("login_consumer_rebalances_total", {"event": "revoke"}) >= 2
    assert second_registry.get_sample_value("login_consumer_rebalances_total", {"event": "assign"}) >= 1
    assert processed(first_registry) + processed(second_registry) == len(ids)
    # the second did part of the work (its input partitions); every event's output is written by whoever
    # owns its network's partition (one network here: 8.8.8.8)
    assert (second_registry.get_sample_value("login_consumer_stage_events_total", {"stage": "user"}) or 0) > 0
    assert {p.partition for p in first_detectors.assigned} == {0, 1, 2, 3}
    assert first_detectors.revoked
    assert not any(lost for _, lost in first_detectors.revoked)
    assert second_detectors.assigned
