"""Where each assigned input partition stands against its end: ``Ends.at_end``.

Read to its end (position at the high watermark) is what makes a partition *idle* for the aligner
(``intake/align.py``) and in the progress records the network stage's merge trusts (``stages/merge.py``):
what it delivers next is newer than anything read so far. Both figures are the client's, no broker round
trip per question, with one exception, at the assignment:

* a partition with nothing left to read has no consumer position until a message arrives, yet it is at its
  end: until then it stands at its committed offset, asked of the group coordinator at the assignment;
* the client caches a partition's high watermark from its last fetch and keeps it when the partition
  leaves, so for a partition a rebalance hands back to this process the cache predates the hand-over. A new
  owner that had not fetched yet (the rebalance callback restores state first, and the first progress
  records go out before the first fetch answers) then called a partition with hundreds of records unread
  idle, and the merge released the other sources' events ahead of them (docs/detection.md). So the end is
  asked of the broker at the assignment and the cache is never trusted alone before a message of the
  partition was read; an end the broker could not tell means "not at its end" (the merge waits, and gives
  up on a silent source only counted).
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from login_consumer.intake.pauses import Warn
from login_consumer.intake.pauses import tps_of as _tps
from login_consumer.records import TP


class Ends:
    """Committed offsets and high watermarks of the input partitions at their assignment; ``at_end``."""

    def __init__(self, consumer: Consumer, warn: Warn) -> None:
        self.consumer = consumer
        self._warn = warn
        self._starts: dict[TP, int] = {}  # committed offsets at the assignment
        self._ends: dict[TP, int] = {}  # high watermarks at the assignment, asked of the broker

    def assigned(self, tps: list[TP]) -> None:
        """Newly assigned input partitions: where they start and end (two broker round trips)."""
        try:
            found = self.consumer.committed(_tps(tps), timeout=10)
        except KafkaException as exc:
            self._warn("committed.failed", error=str(exc))
            return
        for tp in found:
            self._starts[(tp.topic, tp.partition)] = tp.offset
        for topic, partition in tps:
            try:
                _, high = self.consumer.get_watermark_offsets(
                    TopicPartition(topic, partition), timeout=10, cached=False
                )
            except KafkaException as exc:
                self._warn("watermarks.failed", error=str(exc), partition=partition)
                continue  # unknown: not at its end until a message of it is read
            self._ends[(topic, partition)] = high

    def forget(self, gone: Iterable[TP]) -> None:
        for tp in gone:
            self._starts.pop(tp, None)
            self._ends.pop(tp, None)

    def at_end(self, tp: TP) -> bool:
        """Every message of the partition that the broker had at the last fetch was read (before the first
        message since the assignment: that the broker had at the assignment)."""
        part = TopicPartition(tp[0], tp[1])
        try:
            low, high = self.consumer.get_watermark_offsets(part, cached=True)
            position = self.consumer.position([part])[0].offset
        except KafkaException:
            return False
        if position < 0:  # nothing consumed since the assignment: it starts at its committed offset
            end = self._ends.get(tp)  # the cache may predate the assignment: never trusted alone
            if end is None:
                return False
            high = max(high, end)
            position = self._starts.get(tp, -1)
        if high < 0:
            return False
        return position >= high if position >= 0 else high == low
