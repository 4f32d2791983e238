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
* where each partition is (``at_end``: ``intake/ends.py``; ``lag``): from cached watermarks, no broker
  round trip (but at an assignment: the cache may predate it);
* which partitions the broker refused to let it read (``intake/refusals.py``).

It knows nothing of stages or outputs: the conductor (``app.py``) hands what it reads to the stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from login_consumer.intake.align import Aligner
from login_consumer.intake.ends import Ends
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
        self.ends = Ends(consumer, warn)  # where the input partitions stand against their ends
        self.pauses = Pauses(consumer, warn)  # crowded (aligner), held (restore), throttled (in flight)
        self.refused = Refusals()  # partitions a consume error refused

    # ------------------------------------------------------------------ assignment

    def assign(self, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.assignment.update(tps)
        self.refused.assigned(set(tps))
        inputs = [tp for tp in tps if tp[0] == self.input_topic]
        if inputs:
            self.ends.assigned(inputs)
        self.pauses.assigned(set(tps))

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
        self.ends.forget(gone)

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
        """Read to its end (``intake/ends.py``)."""
        return self.ends.at_end(tp)

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
