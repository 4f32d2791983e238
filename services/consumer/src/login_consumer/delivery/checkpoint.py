"""Pipelined delivery: outputs go out while the loop keeps consuming; progress is committed per interval.

The loop hands every output, dead letter, repartition record and changelog record to the producer
without waiting for it; ``Checkpoint`` remembers, per input partition (of every stage's topic), the first
offset processed since the last commit (``base``: where to go back to) and the next offset to commit
(``position``). Every ``COMMIT_INTERVAL_MS``, on revocation and on stop, ``commit``:

* at-least-once: waits for the acknowledgements still in flight (``flush``; by then most have arrived), and
  when none failed commits ``position`` for every partition: the highest offsets whose outputs, dead
  letters and state records are all acknowledged. A failed delivery commits nothing: the caller rewinds
  to ``base`` and processes again (duplicates, never losses).
* exactly-once: one transaction per interval, opened by the first record after a commit
  (``begin``), holding the interval's records and its input offsets (``send_offsets_to_transaction``);
  committing it makes all of them visible at once. A failed commit is aborted and rewound.

This is the checkpoint model of Kafka Streams (``commit.interval.ms``) and Quix Streams: the CPU idles for
the tail of one round trip per interval, not per batch.

The checkpoint also owns what bounds a commit and what follows one, each in a part of its own:

* commit limits and rewind (``progress.py``, ``Progress``): a partition is committed no further than its
  first record still held (the network stage's merges hold records until their turn, ``stages/merge.py``);
  after a failed commit, each assigned partition starts again at its first offset processed since the last
  commit (or its first held record if earlier); the conductor restores the state of those partitions
  (``stores/manager.py``) and seeks there (``intake/group.py``);
* the transactions (``transactions.py``, ``Transactions``): leader and coordinator changes, pending aborts
  and a fenced producer;
* purge (``Purge``): every ``PURGE_SECONDS``, the repartition records the group has committed are deleted.

``saw`` gets every error of the delivery path (``cluster.py`` counts the refusals), ``heartbeat`` is called
while waiting so the liveness check knows the loop is waiting on Kafka, not stuck.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from login_consumer.delivery.progress import Progress
from login_consumer.delivery.transactions import ABORT_TRY_SECONDS, Transactions
from login_consumer.errors import CommitFailed
from login_consumer.records import TP
from login_consumer.topics import InternalTopics

PURGE_SECONDS: Final = 30.0  # how often consumed repartition records are deleted

__all__ = ["ABORT_TRY_SECONDS", "PURGE_SECONDS", "Checkpoint", "CommitFailed", "Purge"]


def _ignore(_err: KafkaError | None) -> object:
    return None


def _nothing() -> None:
    return None


class Purge:
    """Deletes the records of ``topic`` below what the group committed, at most every ``every`` seconds,
    for the partitions this process owns (``owned``)."""

    def __init__(
        self,
        topics: InternalTopics,
        topic: str,
        owned: Callable[[], Collection[TP]],
        *,
        every: float = PURGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.topics = topics
        self.topic = topic
        self._owned = owned
        self.every = every
        self._clock = clock
        self._committed: dict[TP, int] = {}
        self._at = clock()

    def committed(self, offsets: Mapping[TP, int]) -> None:
        for tp, offset in offsets.items():
            if tp[0] == self.topic:
                self._committed[tp] = offset
        if self._clock() - self._at < self.every:
            return
        self._at = self._clock()
        owned = self._owned()
        self.topics.purge({tp: o for tp, o in self._committed.items() if tp in owned})

    def forget(self, gone: Iterable[TP]) -> None:
        for tp in gone:
            self._committed.pop(tp, None)


class Checkpoint:
    def __init__(
        self,
        consumer: Consumer,
        producer: Producer,
        *,
        exactly_once: bool,
        interval: float,
        delivery_timeout: float,
        warn: Callable[..., None],
        limit: Callable[[TP], int | None] | None = None,
        purge: Purge | None = None,
        report: Callable[[KafkaError, str], bool] = lambda _err, _where: False,
        saw: Callable[[KafkaError | None], object] = _ignore,
        heartbeat: Callable[[], None] = _nothing,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``limit``: the first offset of a partition not done yet (or None); ``purge``: what to purge
        after each commit; ``report``: the access policy, told of a refused transaction; ``saw``: every
        error of the delivery path (the cluster's health); ``heartbeat``: called while waiting on Kafka."""
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.interval = interval
        self.delivery_timeout = delivery_timeout
        self._warn = warn
        self.progress = Progress(limit)
        self.purge = purge
        self.saw = saw
        self.heartbeat = heartbeat
        self._clock = clock
        self.transactions = Transactions(
            producer,
            exactly_once=exactly_once,
            timeout=delivery_timeout,
            warn=warn,
            report=report,
            saw=saw,
            heartbeat=lambda: self.heartbeat(),  # noqa: PLW0108 - the conductor sets it later
            clock=clock,
        )
        self.failures = 0  # delivery failures reported since the last commit
        self.last_error = ""
        self.unsent = 0  # records the producer refused to take in this interval
        self.due = clock() + interval
        self.commits = 0
        self.last_committed: dict[TP, int] = {}

    # ------------------------------------------------------------------ bookkeeping

    def begin(self) -> None:
        """Before producing: open the interval's transaction (exactly-once) if none is open, after
        finishing an abort that is still pending (raises what the producer raises: the sender reports it
        through ``produce_failed``)."""
        self.transactions.begin()

    def produce_failed(self, err: KafkaError) -> None:
        """The producer refused a record (or the transaction) when it was handed over: the interval cannot
        be committed. (Exactly-once counts only these: a record that fails later fails its transaction,
        and the records of an aborted transaction report failures of their own that are no news.)"""
        self.delivery_failed(err)
        self.unsent += 1
        if err.fatal():
            self.transactions.broken = err

    def delivery_failed(self, error: KafkaError | str) -> None:
        self.failures += 1
        if isinstance(error, KafkaError):
            self.saw(error)
            error = error.name()
        self.last_error = error

    def is_due(self) -> bool:
        return self._clock() >= self.due

    def wait_left(self) -> float:
        return max(0.0, self.due - self._clock())

    def forget(self, gone: Iterable[TP]) -> None:
        """Partitions went away without a commit (lost): their progress is their new owner's to redo."""
        gone = list(gone)
        self.progress.forget(gone)
        if self.purge is not None:
            self.purge.forget(gone)

    # ------------------------------------------------------------------ commit

    def commit(self, *, deadline: float | None = None, sync: bool = False) -> int:
        """Commit the interval; the number of partitions committed. Raises CommitFailed (rewind first)."""
        self.progress.apply_limits()  # a partition is done only up to its first record still held
        committed = self._commit(deadline=deadline, sync=sync)
        if committed and self.purge is not None:
            self.purge.committed(self.last_committed)
        return committed

    def _commit(self, *, deadline: float | None, sync: bool) -> int:
        self.due = self._clock() + self.interval
        position = self.progress.position
        self.last_committed = dict(position)
        if not position:
            if self.exactly_once and self.transactions.open:
                self.transactions.commit([], self.consumer.consumer_group_metadata, deadline)
            return 0
        offsets = dict(position)
        if self.exactly_once:
            if self.unsent or self.transactions.broken is not None:  # a record never reached the transaction
                failed, error = self.unsent, self.last_error
                self.failures = self.unsent = 0
                self.abort()
                raise CommitFailed(f"{failed} record(s) refused by the producer ({error})")
            self.transactions.commit(
                topic_partitions(offsets), self.consumer.consumer_group_metadata, deadline
            )
        else:
            left = self._flush(deadline)
            if left or self.failures:
                error = self.last_error
                failed = self.failures
                self.failures = 0
                raise CommitFailed(f"{left} output(s) unacknowledged, {failed} failed ({error or 'timeout'})")
            try:
                if sync:
                    self.consumer.commit(offsets=topic_partitions(offsets), asynchronous=False)
                else:
                    self.consumer.commit(offsets=topic_partitions(offsets), asynchronous=True)
            except KafkaException as exc:
                # the outputs are delivered: the offsets go with the next commit (or are redone: duplicates)
                self._warn("commit.failed", error=str(exc), sync=sync)
                return 0
        self.progress.committed()
        self.unsent = 0
        if self.exactly_once:
            self.failures = 0  # the transaction's own records are committed: earlier reports are old news
        self.commits += 1
        return len(offsets)

    def _flush(self, deadline: float | None) -> int:
        """Wait for acknowledgements, up to DELIVERY_TIMEOUT (or ``deadline``); messages left."""
        end = self._clock() + self.delivery_timeout
        if deadline is not None:
            end = min(end, deadline)
        remaining = len(self.producer)
        while remaining and self._clock() < end:
            remaining = self.producer.flush(max(0.0, min(0.5, end - self._clock())))
            self.heartbeat()
        return remaining

    def abort(self) -> None:
        """Abort the open transaction (exactly-once): ``Transactions.abort``."""
        self.transactions.abort()

    def replace_producer(self, producer: Producer) -> None:
        """A new producer instead of a broken one (its transactions initialised by the caller)."""
        self.producer = producer
        self.transactions.replace(producer)
        self.failures = self.unsent = 0

    def rewind(self, assigned: Collection[TP]) -> dict[TP, int]:
        """Where each assigned partition processed since the last commit starts again (``Progress.rewind``);
        resets the interval."""
        self.failures = self.unsent = 0
        return self.progress.rewind(assigned)


def topic_partitions(offsets: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
