"""The intake: what the consumer reads next, in what order, and when it stops reading.

Modelled on Kafka Streams' ``PartitionGroup``: one object owns the assigned partitions of every stage's
input topic and decides what the loop gets:

* reading (``take``): what the client has already fetched, up to ``BATCH_SIZE``, at once; a wait only when
  nothing is there (bounded by the next checkpoint, and short while the aligner holds messages);
* ordering (``align``): the input topic's partitions released in event-time order (``intake/align.py``,
  ``EVENT_TIME_ALIGNMENT``); a partition holding more than its share of ``ALIGNMENT_MAX_BUFFERED`` is
  paused until the others catch up;
* back-pressure (``backpressure``): above ``MAX_IN_FLIGHT`` unacknowledged outputs every partition is
  paused until half of them are acknowledged (partitions assigned meanwhile start paused too);
* pausing itself, for any of these reasons or a restore's hold: ``intake/pauses.py`` (one rule resumes);
* where each partition is (``at_end``, ``lag``): from cached watermarks, no broker round trip (but at
  an assignment: the cache may predate it);
* which partitions the broker refused to let it read (``intake/refusals.py``).

It knows nothing of stages or outputs: the conductor (``app.py``) hands what it reads to the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from login_consumer.intake.align import Aligner
from login_consumer.intake.pauses import Pauses, Warn
from login_consumer.intake.pauses import tps_of as _tps
from login_consumer.intake.refusals import Refusals
from login_consumer.records import TP


class PartitionGroup:
    def __init__(
        self,
        consumer: Consumer,
        input_topic: str,
        *,
        batch_size: int,
        poll_timeout: float,
        aligner: Aligner | None,
        warn: Warn,
        out_of_order: Callable[[str, int], None] = lambda _cause, _count: None,
    ) -> None:
        """``out_of_order(cause, count)``: the aligner released without waiting (counted in the metrics)."""
        self.consumer = consumer
        self.input_topic = input_topic
        self.batch_size = batch_size
        self.poll_timeout = poll_timeout
        self.aligner = aligner
        self._warn = warn
        self._out_of_order = out_of_order
        self.assignment: set[TP] = set()
        self._starts: dict[TP, int] = {}  # committed offsets of the input partitions at assignment
        self._ends: dict[TP, int] = {}  # their high watermarks, asked of the broker at assignment
        self.pauses = Pauses(consumer, warn)  # crowded (aligner), held (restore), throttled (in flight)
        self.refused = Refusals()  # partitions a consume error refused

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.assignment.update(tps)
        self.refused.assigned(set(tps))
        inputs = [tp for tp in tps if tp[0] == self.input_topic]
        if inputs:
            self._starts_of(inputs)
        self.pauses.assigned(set(tps))

    def _starts_of(self, tps: list[TP]) -> None:
        """Where newly assigned input partitions start (their committed offsets) and end (their high
        watermarks, asked of the broker): a partition with nothing left to read has no consumer position
        until a message arrives, yet it is at its end.

        The end is asked, not taken from the client's cache: the cache keeps what the last fetch of the
        partition said, and for a partition this process owned before (a rebalance hands it back) that fetch
        predates the hand-over. With the stale end, a partition whose new owner has not fetched yet looked
        read to its end while others had written to it meanwhile: its progress records said *idle* and the
        network stage's merge released other sources' events ahead of it (a rescale flagged other events
        of a credential-stuffing wave than one process: docs/detection.md)."""
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

    def hold(self, tps: set[TP]) -> None:
        """Read nothing more of these partitions until ``release`` (their state could not be restored)."""
        self.pauses.hold(tps)

    def release(self, tps: set[TP]) -> None:
        self.pauses.release(tps)

    def stuck(self) -> set[TP]:
        """Refused partitions that never got a position (``Refusals.stuck``)."""
        return self.refused.stuck(self.consumer, self.assignment)

    def forget(self, gone: set[TP]) -> None:
        """Partitions went away: drop what is held of them and their bookkeeping."""
        if self.aligner is not None:
            self.aligner.drop(gone)
        self.pauses.forget(gone)
        self.refused.forget(gone)
        self.assignment -= gone
        for tp in gone:
            self._starts.pop(tp, None)
            self._ends.pop(tp, None)

    def inputs(self) -> list[TP]:
        """The assigned partitions of the input topic."""
        return [tp for tp in self.assignment if tp[0] == self.input_topic]

    def rewind(self, points: Mapping[TP, int]) -> None:
        """Read these partitions again from these offsets (what the aligner holds of them comes again)."""
        if self.aligner is not None:
            self.aligner.drop(points)
        for (topic, partition), offset in points.items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                self._warn("seek.failed", error=str(exc))

    # ------------------------------------------------------------------ reading

    def take(self, wait_left: float) -> list[Message]:
        """What the client has already fetched (up to BATCH_SIZE); waits only when there is nothing."""
        consumer = self.consumer
        size = self.batch_size
        messages = consumer.consume(size, 0)
        aligner = self.aligner
        if messages or (aligner is not None and aligner.ready):
            return messages
        wait = min(self.poll_timeout, wait_left)
        if aligner is not None and aligner.buffered:
            wait = min(wait, 0.05)  # held messages may be released by the aligner's timeout
        first = consumer.poll(wait) if wait > 0 else None
        if first is None:
            return []
        return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]

    def split(
        self,
        messages: list[Message],
        repartition_topic: str | None,
        on_error: Callable[[KafkaError], bool],
    ) -> tuple[list[Message], list[Message]]:
        """(input messages, repartition messages) of a read; other errors go to ``on_error``, which says
        whether it was a refusal (then ``Refusals`` keeps the partition it names)."""
        inputs: list[Message] = []
        repartitioned: list[Message] = []
        input_topic = self.input_topic
        refused = self.refused
        holding = refused.holding  # the set itself (``read`` empties it): one truth test per message
        for msg in messages:
            err = msg.error()
            if err is None:
                (inputs if msg.topic() == input_topic else repartitioned).append(msg)
                if holding:
                    refused.read((msg.topic() or "", msg.partition() or 0))
            elif err.code() == KafkaError._PARTITION_EOF:
                refused.read((msg.topic() or "", msg.partition() or 0))
            elif on_error(err) and msg.topic():
                refused.add((msg.topic() or "", msg.partition() or 0))
        return inputs, repartitioned

    def align(self, messages: list[Message], *, busy: bool) -> list[Message]:
        """Input messages in event-time order across partitions (``intake/align.py``): what can go now."""
        aligner = self.aligner
        if aligner is None or not (aligner.buffered or len(self.inputs()) > 1):
            return messages
        aligner.add(messages)
        forced, timeouts = aligner.forced, aligner.timeouts
        assignment = sorted(self.inputs())
        released = aligner.release(assignment, self.at_end, busy=busy, limit=self.batch_size)
        if (aligner.forced, aligner.timeouts) != (forced, timeouts):
            self._out_of_order("silent_source", aligner.timeouts - timeouts)
            self._out_of_order("too_many_held", aligner.forced - forced)
            self._warn("alignment.out_of_order", **aligner.snapshot())
        pauses = self.pauses
        pauses.crowd(set(aligner.crowded(assignment)))
        share = aligner.max_buffered // max(1, len(assignment))
        pauses.calm({tp for tp in pauses.crowded if aligner.holding(tp) <= share // 2})
        return released

    def idle(self, tp: TP) -> bool:
        """Read to its end with nothing held back: what it delivers next is newer than anything so far."""
        return (self.aligner is None or not self.aligner.holding(tp)) and self.at_end(tp)

    def at_end(self, tp: TP) -> bool:
        """True when every message of the partition that the broker had at the last fetch was read (before
        the first message since the assignment: at the assignment, ``_starts_of``)."""
        part = TopicPartition(tp[0], tp[1])
        try:
            low, high = self.consumer.get_watermark_offsets(part, cached=True)
            position = self.consumer.position([part])[0].offset
        except KafkaException:
            return False
        if position < 0:  # nothing consumed since the assignment: it starts at its committed offset
            end = self._ends.get(tp)  # the cache may predate the assignment: never trusted alone
            if end is None:
                return False  # its end at the assignment is unknown
            high = max(high, end)
            position = self._starts.get(tp, -1)
        if high < 0:
            return False
        return position >= high if position >= 0 else high == low

    # ------------------------------------------------------------------ back-pressure and lag

    def backpressure(self, in_flight: int, limit: int) -> bool:
        """Pause every partition while ``limit`` records await acknowledgement; resume at half. True while
        paused."""
        pauses = self.pauses
        if not pauses.throttled and in_flight >= limit:
            pauses.throttle(self.assignment)
            self._warn("backpressure.paused", in_flight=in_flight, max_in_flight=limit)
        elif pauses.throttled and in_flight < limit // 2:
            pauses.unthrottle(self.assignment)
        return pauses.throttled

    def lag(self) -> dict[TP, int]:
        """Records left per assigned partition (cached watermarks, no broker round trip)."""
        lag: dict[TP, int] = {}
        if not self.assignment:
            return lag
        try:
            for tp in self.consumer.position(_tps(self.assignment)):
                _low, high = self.consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0 and tp.offset >= 0:
                    lag[(tp.topic, tp.partition)] = max(0, high - tp.offset)
        except KafkaException as exc:
            self._warn("lag.failed", error=str(exc))
        return lag

    def snapshot(self) -> dict[str, Any]:
        pauses = self.pauses
        return {
            "partitions": len(self.assignment),
            "paused": len(pauses.crowded),
            "throttled": pauses.throttled,
        }
