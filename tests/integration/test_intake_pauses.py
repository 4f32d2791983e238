"""Pausing for several reasons at once (``intake/pauses.py``), against a real broker.

librdkafka keeps one paused flag per partition while the intake has three reasons to set it: the aligner
(crowded), a restore (held), back-pressure (throttled). A partition must read again only when its last
reason clears; these tests feed both partitions before every step and watch which ones deliver.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from login_consumer.intake.pauses import Pauses
from login_consumer.records import TP


class Partitions:
    def __init__(self, kafka: str, topic: str) -> None:
        self.topic = topic
        self.p0: TP = (topic, 0)
        self.p1: TP = (topic, 1)
        self.producer = Producer({"bootstrap.servers": kafka})
        self.consumer = Consumer(
            {"bootstrap.servers": kafka, "group.id": f"{topic}-g", "enable.auto.commit": False}
        )
        self.consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in (0, 1)])
        self.warnings: list[tuple[str, dict[str, Any]]] = []
        self.pauses = Pauses(self.consumer, lambda event, **kw: self.warnings.append((event, kw)))

    @property
    def both(self) -> set[TP]:
        return {self.p0, self.p1}

    def delivering(self, seconds: float = 3.0) -> set[TP]:
        """Feed 5 records to each partition, then say which partitions delivered any within ``seconds``."""
        for partition in (0, 1):
            for n in range(5):
                self.producer.produce(self.topic, value=b"x%d" % n, partition=partition)
        assert self.producer.flush(10) == 0
        seen: set[TP] = set()
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for msg in self.consumer.consume(100, 0.2):
                assert msg.error() is None, msg.error()
                seen.add((msg.topic() or "", msg.partition() or 0))
        return seen


@pytest.fixture
def parts(kafka: str, topic_factory: Callable[..., str]) -> Iterator[Partitions]:
    p = Partitions(kafka, topic_factory("pauses", partitions=2))
    yield p
    p.consumer.close()


def test_a_partition_reads_again_only_when_its_last_reason_clears(parts: Partitions) -> None:
    pauses = parts.pauses
    assert parts.delivering() == parts.both  # the consumer reads both before anything pauses
    pauses.throttle(parts.both)
    pauses.crowd({parts.p0})
    pauses.hold({parts.p1})
    assert parts.delivering() == set()
    pauses.unthrottle(parts.both)  # back-pressure over: p0 is still crowded, p1 still held
    assert parts.delivering() == set()
    pauses.calm({parts.p0})
    assert parts.delivering() == {parts.p0}
    pauses.throttle(parts.both)
    pauses.release({parts.p1})  # restored while throttled: stays paused
    assert parts.delivering() == set()
    pauses.unthrottle(parts.both)
    assert parts.delivering() == parts.both
    assert parts.warnings == []


def test_calm_and_release_touch_only_partitions_paused_for_that_reason(parts: Partitions) -> None:
    pauses = parts.pauses
    pauses.hold({parts.p0})
    pauses.calm({parts.p0})  # never crowded: calming it must not undo the hold
    pauses.release({parts.p1})  # never held: nothing to release
    assert parts.delivering() == {parts.p1}
    assert pauses.held == {parts.p0}
    assert pauses.crowded == set()


def test_partitions_assigned_while_throttled_start_paused(parts: Partitions) -> None:
    pauses = parts.pauses
    pauses.throttle({parts.p0})
    pauses.assigned({parts.p1})  # as PartitionGroup.assign does for partitions arriving mid-throttle
    assert parts.delivering() == set()
    pauses.unthrottle(parts.both)
    assert parts.delivering() == parts.both
