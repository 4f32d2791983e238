"""Why a partition is paused, and the one rule for resuming it.

Three reasons pause input partitions, each owned by a different part of the intake:

* **crowded**: the aligner holds more than the partition's share of ``ALIGNMENT_MAX_BUFFERED``
  (``PartitionGroup.align``); it resumes when the aligner holds half its share or less;
* **held**: its state could not be restored yet (``hold``/``release``, from the conductor);
* **throttled**: back-pressure pauses every partition while too many outputs await acknowledgement
  (``PartitionGroup.backpressure``); partitions assigned meanwhile start paused too.

The reasons overlap, and librdkafka keeps one paused flag per partition. Resuming on one reason alone would
undo another (a throttled partition resumed because the aligner calmed down reads on while the producer's
queue is full), so every resume goes through ``free``: a partition is resumed only when no reason is left.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, KafkaException, TopicPartition

from login_consumer.records import TP

Warn = Callable[..., None]


def tps_of(tps: Iterable[TP]) -> list[TopicPartition]:
    return [TopicPartition(t, p) for t, p in tps]


class Pauses:
    def __init__(self, consumer: Consumer, warn: Warn) -> None:
        self.consumer = consumer
        self._warn = warn
        self.crowded: set[TP] = set()
        self.held: set[TP] = set()
        self.throttled = False

    def free(self, tps: set[TP]) -> set[TP]:
        """Those of ``tps`` that no reason keeps paused."""
        return set() if self.throttled else tps - self.crowded - self.held

    def _set(self, tps: set[TP], *, paused: bool) -> None:
        if not tps:
            return
        try:
            (self.consumer.pause if paused else self.consumer.resume)(tps_of(tps))
        except KafkaException as exc:
            self._warn("pause.failed", error=str(exc))

    def assigned(self, tps: set[TP]) -> None:
        """New partitions start paused while the others are throttled."""
        if self.throttled:
            self._set(tps, paused=True)

    def hold(self, tps: set[TP]) -> None:
        self._set(tps - self.held, paused=True)
        self.held |= tps

    def release(self, tps: set[TP]) -> None:
        tps &= self.held
        self.held -= tps
        self._set(self.free(tps), paused=False)

    def crowd(self, tps: set[TP]) -> None:
        self._set(tps - self.crowded, paused=True)
        self.crowded |= tps

    def calm(self, tps: set[TP]) -> None:
        tps &= self.crowded
        self.crowded -= tps
        self._set(self.free(tps), paused=False)

    def throttle(self, assignment: set[TP]) -> None:
        self._set(assignment, paused=True)
        self.throttled = True

    def unthrottle(self, assignment: set[TP]) -> None:
        self.throttled = False
        self._set(self.free(assignment), paused=False)

    def forget(self, gone: set[TP]) -> None:
        self.crowded -= gone
        self.held -= gone
