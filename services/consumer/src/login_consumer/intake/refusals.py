"""Partitions whose read the broker refused, for the intake (``intake/group.py``).

Two uses, two sets: librdkafka stops fetching a partition whose start offset it could not look up (a
refused ListOffsets) until it is assigned again, so refused partitions are *watched* and rejoined when
stuck; and a refused read must keep ``/ready`` failed until the partition delivers again, not only until
the next checkpoint: the network stage's partitions may go on committing while the input stays refused.

Rejoining to unstick them (``rejoin``) revokes every partition and assigns them again: the held ones
stay held through it (``forget`` keeps them), and the next assignment drops those that went to another
member. Without that, ``/ready`` answered 200 between two refusals ("in group, 0 partition(s)") and the
log said ``kafka.access_restored`` after every rejoin, while the read was still refused (seen on
Kubernetes: a KafkaUser without its Read, tests/e2e/test_access.py).

A held partition heals when it delivers a message. One that has nothing new to deliver would never heal
that way, so while any is held, each ``stuck`` check (the conductor's rejoin backoff: 0.5 s doubling to
30 s) also *probes* them: a client of its own assigned at their ends, with partition-end events, which a
granted read answers with the end (or a message) and a refused one with the refusal again. That costs a
short-lived client per check only while a read is refused, never on the healthy path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

from confluent_kafka import OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition

from login_consumer.records import TP

PROBE_SECONDS: Final = 5.0  # longest a probe waits for an answer of every held partition


def _tps(tps: Iterable[TP]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in tps]


class Refusals:
    """Partitions whose read the broker refused (authorization, a missing topic).

    ``watched``: looked at by ``stuck`` (then forgotten): librdkafka stops fetching a partition whose start
    offset it could not look up (a refused ListOffsets) until it is assigned again. ``holding``: refused and
    nothing read of them since. The conductor's ``/ready`` stays failed while any is held: the other
    partitions (the network stage's) may go on committing while the input stays refused."""

    def __init__(self, probe_config: Mapping[str, Any] | None = None) -> None:
        self.watched: set[TP] = set()
        self.holding: set[TP] = set()
        self.rejoining: set[TP] = set()  # held when we left the group to rejoin: held until reassigned
        self.probe_config = probe_config  # the probe's client settings (group.id included); None: no probe

    def __bool__(self) -> bool:
        return bool(self.watched or self.holding)

    def add(self, tp: TP) -> None:
        self.watched.add(tp)
        self.holding.add(tp)

    def read(self, tp: TP) -> None:
        """A message (or the partition's end) was read: its read is not refused (any more)."""
        self.holding.discard(tp)

    def forget(self, gone: set[TP]) -> None:
        self.watched -= gone
        self.holding -= gone - self.rejoining

    def rejoin(self) -> None:
        """We leave the group to join again (``stuck`` partitions): what is held stays held through it."""
        self.rejoining = set(self.holding)

    def assigned(self, tps: set[TP]) -> None:
        """A new assignment: after our rejoin, the held partitions it does not hold are not ours to hold."""
        if self.rejoining:
            self.holding -= self.rejoining - tps
            self.rejoining = set()

    def stuck(self, consumer: Consumer, assignment: set[TP]) -> set[TP]:
        """Watched partitions still assigned that never got a position (then no longer watched)."""
        if self.rejoining:  # between our leaving and the new assignment: nothing is known yet
            return set()
        self.holding &= assignment
        if self.holding and self.probe_config is not None:
            self.probe(self.probe_config)
        tps = self.watched & assignment
        self.watched.clear()
        if not tps:
            return set()
        try:
            positions = consumer.position(_tps(tps))
        except KafkaException:
            return set()
        return {(tp.topic, tp.partition) for tp in positions if tp.offset < 0}

    def probe(self, config: Mapping[str, Any]) -> None:
        """Read each held partition from its end with a client of its own: those that answer are healed."""
        settings = {**config, "enable.auto.commit": False, "enable.partition.eof": True}
        try:
            probe = Consumer(settings)
        except KafkaException:
            return
        waiting = set(self.holding)
        try:
            probe.assign([TopicPartition(t, p, OFFSET_END) for t, p in sorted(waiting)])
            deadline = time.monotonic() + PROBE_SECONDS
            while waiting and time.monotonic() < deadline:
                for msg in probe.consume(100, 0.5):
                    tp = (msg.topic() or "", msg.partition() or 0)
                    err = msg.error()
                    if err is None or err.code() == KafkaError._PARTITION_EOF:
                        self.holding.discard(tp)
                        waiting.discard(tp)
                    elif tp in waiting:  # refused again: still held
                        waiting.discard(tp)
        except KafkaException:
            return  # the probe itself failed: nothing is known, the partitions stay held
        finally:
            probe.close()
