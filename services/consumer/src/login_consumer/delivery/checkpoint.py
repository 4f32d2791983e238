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

Leader and coordinator changes (a broker restarting or killed, three brokers with min.insync.replicas=2):
librdkafka retries produce requests itself (NOT_LEADER_FOR_PARTITION, NOT_ENOUGH_REPLICAS, ...). A
transaction call that fails with a retriable error (the coordinator moving, a timeout) is called again, as
librdkafka documents, until DELIVERY_TIMEOUT; an error that needs an abort aborts and rewinds. An abort the
cluster did not confirm (it cannot write the abort markers while too few replicas are in sync) stays
pending and is finished before the next transaction begins, tried again until it is: nothing is produced
outside a transaction, nothing is dead-lettered, the process does not crash. A fatal error (the producer
fenced, as a coordinator move can leave it) replaces the producer with a new one of the same
transactional id (``renew``: init_transactions fences the old one and aborts its transaction) and rewinds,
as Kafka Streams does on a fenced producer. ``saw`` gets every error of
the delivery path (delivery/cluster.py counts the refusals), ``heartbeat`` is called while waiting so the
liveness check knows the loop is waiting on Kafka, not stuck.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

TP = tuple[str, int]
ABORT_TRY_SECONDS: Final = 10.0  # one try of an abort; a pending abort is tried again until it is done


def _ignore(_err: KafkaError | None) -> object:
    return None


def _nothing() -> None:
    return None


class CommitFailed(Exception):  # noqa: N818 - a signal to rewind, not an error to report
    """The interval's outputs were not all delivered (or its transaction failed): rewind and retry."""


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
        saw: Callable[[KafkaError | None], object] = _ignore,
        heartbeat: Callable[[], None] = _nothing,
        renew: Callable[[], Producer] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.exactly_once = exactly_once
        self.interval = interval
        self.delivery_timeout = delivery_timeout
        self._warn = warn
        self._saw = saw
        self._heartbeat = heartbeat
        self._renew = renew
        self.renewals = 0
        self._clock = clock
        self.base: dict[TP, int] = {}  # first offset processed since the last commit
        self.position: dict[TP, int] = {}  # next offset to commit
        self.failures = 0  # delivery failures reported since the last commit
        self.last_error = ""
        self.in_transaction = False
        self.abort_pending = False  # an abort not confirmed yet: finished before the next transaction
        self.due = clock() + interval
        self.commits = 0

    # ------------------------------------------------------------------ bookkeeping

    def begin(self) -> None:
        """Before producing: open the interval's transaction (exactly-once) if none is open, after
        finishing an abort that is still pending."""
        if self.exactly_once and not self.in_transaction:
            while self.abort_pending:
                self._try_abort(ABORT_TRY_SECONDS)
            try:
                self.producer.begin_transaction()
            except KafkaException as exc:
                if not exc.args[0].fatal():
                    raise
                self._renew_producer(exc.args[0])
                self.producer.begin_transaction()
            self.in_transaction = True

    def processed(self, tp: TP, first: int, following: int) -> None:
        """Offsets ``first`` .. ``following - 1`` of ``tp`` were processed (their records are produced)."""
        if tp not in self.base:
            self.base[tp] = first
        self.position[tp] = following

    def cap(self, tp: TP, offset: int) -> None:
        """Commit ``tp`` no further than ``offset`` (what lies beyond is not done yet)."""
        if tp in self.position:
            self.position[tp] = min(self.position[tp], offset)

    def delivery_failed(self, error: KafkaError | str) -> None:
        self.failures += 1
        if isinstance(error, KafkaError):
            self._saw(error)
            error = error.name()
        self.last_error = error

    @property
    def pending(self) -> bool:
        return bool(self.position)

    def is_due(self) -> bool:
        return self._clock() >= self.due

    def wait_left(self) -> float:
        return max(0.0, self.due - self._clock())

    def forget(self, gone: Iterable[TP]) -> None:
        """Partitions went away without a commit (lost): their progress is their new owner's to redo."""
        for tp in gone:
            self.base.pop(tp, None)
            self.position.pop(tp, None)

    # ------------------------------------------------------------------ commit

    def commit(self, *, deadline: float | None = None, sync: bool = False) -> int:
        """Commit the interval; the number of partitions committed. Raises CommitFailed (rewind first)."""
        self.due = self._clock() + self.interval
        if not self.position:
            if self.exactly_once and self.in_transaction:
                self._commit_transaction({}, deadline)
            return 0
        offsets = dict(self.position)
        if self.exactly_once:
            self._commit_transaction(offsets, deadline)
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
        self.base.clear()
        self.position.clear()
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
            self._heartbeat()
        return remaining

    def _commit_transaction(self, offsets: dict[TP, int], deadline: float | None) -> None:
        producer = self.producer
        end = self._clock() + self.delivery_timeout
        if deadline is not None:
            end = min(end, max(deadline, self._clock() + 1.0))
        try:
            if offsets:
                tps = topic_partitions(offsets)
                group = self.consumer.consumer_group_metadata()
                self._retrying(
                    "send_offsets_to_transaction",
                    lambda left: producer.send_offsets_to_transaction(tps, group, left),
                    end,
                )
            self._retrying("commit_transaction", producer.commit_transaction, end)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            self._saw(err)
            self._warn("transaction.failed", error=err.str(), code=err.name(), fatal=err.fatal())
            if err.fatal():
                self._renew_producer(err)
            else:
                self.abort()
            raise CommitFailed(f"transaction failed: {err.name()}") from exc
        self.in_transaction = False

    def _retrying(self, what: str, call: Callable[[float], object], end: float) -> None:
        """``call(seconds left)``, called again while it fails with a retriable error and time is left;
        an error that is fatal, needs an abort, or comes after ``end`` is raised."""
        while True:
            try:
                call(max(1.0, end - self._clock()))
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.fatal() or err.txn_requires_abort() or not err.retriable() or self._clock() >= end:
                    raise
                self._saw(err)
                self._warn("transaction.retrying", what=what, error=err.str(), code=err.name())
                self._heartbeat()

    def abort(self) -> None:
        """Abort the open transaction (exactly-once); its records are never visible to read_committed.
        One bounded try: if the cluster does not confirm it, it stays pending (``begin`` finishes it)."""
        if self.exactly_once and self.in_transaction:
            self.in_transaction = False
            self.abort_pending = True
            self._try_abort(min(ABORT_TRY_SECONDS, self.delivery_timeout))

    def _try_abort(self, timeout: float) -> None:
        try:
            self.producer.abort_transaction(timeout)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal():
                self._renew_producer(err)
                return
            if err.retriable():  # not confirmed yet (coordinator away, markers not written): again later
                self._saw(err)
                self._warn("transaction.abort_pending", error=err.str(), code=err.name())
                self._heartbeat()
                return
            # anything else (no transaction left to abort): nothing is pending
            self._warn("transaction.abort_failed", error=err.str(), code=err.name())
        self.abort_pending = False

    def _renew_producer(self, err: KafkaError) -> None:
        """A fatal transaction error (the producer fenced: after a coordinator moved, the broker may no
        longer know its epoch): a new producer with the same transactional id takes over, which aborts
        what the old one left open; the caller rewinds to the last commit. Without ``renew``: raise."""
        if self._renew is None:
            raise KafkaException(err)
        old = self.producer
        with contextlib.suppress(Exception):
            old.purge()
        self.producer = self._renew()
        self.renewals += 1
        self.in_transaction = False
        self.abort_pending = False
        self._warn("transaction.producer_renewed", error=err.str(), code=err.name())

    def rewind_points(self) -> dict[TP, int]:
        """Where each partition processed since the last commit must start again; resets the interval."""
        points = dict(self.base)
        self.base.clear()
        self.position.clear()
        self.failures = 0
        return points


def topic_partitions(offsets: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]
