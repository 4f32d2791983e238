"""Transaction calls through leader and coordinator changes (a broker restarting or killed, three brokers
with min.insync.replicas=2), for the checkpoint (``checkpoint.py``).

librdkafka retries produce requests itself (NOT_LEADER_FOR_PARTITION, NOT_ENOUGH_REPLICAS, ...). A
transaction call that fails with a retriable error (the coordinator moving, a timeout) is called again, as
librdkafka documents, until DELIVERY_TIMEOUT (``retrying``); an error that needs an abort aborts and
rewinds. An abort the cluster did not confirm (it cannot write the abort markers while too few replicas are
in sync) stays pending and is finished before the next transaction begins (``abort_once``): ``begin``
tries it once more, for at most ABORT_TRY_SECONDS (or DELIVERY_TIMEOUT if shorter), and while it is not
confirmed refuses to open a transaction (a retriable ``_TIMED_OUT``: the sender refuses the batch, the
interval is rewound), so that the loop goes back to reading between tries and the group does not drop it
for exceeding ``max.poll.interval.ms`` (``config.WAITS_PER_READ``); a two-broker outage once kept ``begin``
trying for minutes, the group took the partitions away, and the output stopped for good. Nothing is
produced outside a transaction, nothing is dead-lettered, the process does not crash. A fatal error (the
producer fenced, as a coordinator move can leave it) marks the producer broken:
the conductor replaces it with a new one of the same transactional id (``producer.py``: init_transactions
fences the old one and aborts its transaction) after rewinding, as Kafka Streams does on a fenced producer.

``send_offsets_to_transaction`` is called in a thread of its own and waited on for its timeout and
OFFSETS_GRACE_SECONDS more (``bounded``): librdkafka 2.16 can block in it past its timeout, for good, when
the group coordinator it cached is gone (confluentinc/librdkafka#5456: a coordinator request's timeout is
never checked; #5511: a coordinator decommissioned after it left the metadata is not looked up again until
some other broker changes state). The failover tier's two-brokers-down test hung there: one broker back,
the output stopped for ten minutes. A call that does not return is a fatal error of that producer: the
conductor replaces it (the new one's ``init_transactions`` fences the stuck one and aborts its
transaction), and the abandoned thread ends when librdkafka answers it, holding the old producer until then.

``Transactions`` is that lifecycle for the checkpoint's producer: ``begin`` (after finishing a pending
abort), ``commit`` (the interval's offsets sent to the transaction, then committed, each retried), ``abort``
(one bounded try, then pending) and ``broken``, the producer's fatal error in either guarantee (a fenced
transactional producer, or an idempotent one's fatal error): the conductor replaces the producer then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Final

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from login_consumer.errors import CommitFailed

ABORT_TRY_SECONDS: Final = 10.0  # one try of an abort; a pending abort is tried again until it is done
OFFSETS_GRACE_SECONDS: Final = 5.0  # past its own timeout, send_offsets_to_transaction is given up on


def bounded(call: Callable[[], object], seconds: float, what: str, heartbeat: Callable[[], None]) -> None:
    """``call()`` in a thread of its own, waited on for ``seconds`` (``heartbeat`` called each second):
    what it raises is raised here; if it has not returned by then, a fatal ``_TIMED_OUT`` is (the caller's
    producer is stuck and must be replaced; the thread is left to finish when librdkafka answers)."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread, raised there
            outcome.append(exc)
        else:
            outcome.append(None)

    worker = threading.Thread(target=run, name=f"kafka-{what}", daemon=True)
    worker.start()
    end = time.monotonic() + seconds
    while worker.is_alive() and time.monotonic() < end:
        worker.join(min(1.0, max(0.0, end - time.monotonic())))
        heartbeat()
    if not outcome:
        raise KafkaException(
            KafkaError(
                KafkaError._TIMED_OUT,
                f"{what} did not return within {seconds:g}s (librdkafka blocked past its timeout)",
                fatal=True,
            )
        )
    if outcome[0] is not None:
        raise outcome[0]


def retrying(
    call: Callable[[float], object],
    end: float,
    clock: Callable[[], float],
    on_retry: Callable[[KafkaError], None],
) -> None:
    """``call(seconds left)``, called again while it fails with a retriable error and time is left (each
    such error handed to ``on_retry``); an error that is fatal, needs an abort, or comes after ``end`` is
    raised."""
    while True:
        try:
            call(max(1.0, end - clock()))
            return
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.fatal() or err.txn_requires_abort() or not err.retriable() or clock() >= end:
                raise
            on_retry(err)


def abort_once(producer: Producer, timeout: float) -> KafkaError | None:
    """One bounded try of ``abort_transaction``: None when done, else the producer's error (fatal: the
    producer must be replaced; retriable: not confirmed yet; anything else: nothing left to abort)."""
    try:
        producer.abort_transaction(timeout)
    except KafkaException as exc:
        err: KafkaError = exc.args[0]
        return err
    return None


class Transactions:
    def __init__(
        self,
        producer: Producer,
        *,
        exactly_once: bool,
        timeout: float,
        warn: Callable[..., None],
        report: Callable[[KafkaError, str], bool],
        saw: Callable[[KafkaError | None], object],
        heartbeat: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``timeout``: DELIVERY_TIMEOUT, the longest a commit is retried; ``report``: the access policy, told
        of a refused transaction; ``saw``: every error (the cluster's health); ``heartbeat``: called while
        waiting on Kafka."""
        self.producer = producer
        self.exactly_once = exactly_once
        self.timeout = timeout
        self._warn = warn
        self._report = report
        self._saw = saw
        self._heartbeat = heartbeat
        self._clock = clock
        self.open = False  # a transaction is open (exactly-once)
        self.abort_pending = False  # an abort not confirmed yet: finished before the next transaction
        self.broken: KafkaError | None = None  # the producer's fatal error: it must be replaced
        self.initialising = False  # init_transactions not done yet (retriable failure: called again)

    def begin(self) -> None:
        """Before producing: open the interval's transaction (exactly-once) if none is open, after
        finishing an abort that is still pending (one bounded try: raises a retriable ``_TIMED_OUT`` while
        it is not confirmed; else raises what the producer raises)."""
        if self.exactly_once and not self.open:
            if self.initialising and self.broken is None:
                raise KafkaException(
                    KafkaError(
                        KafkaError._STATE,
                        "the producer's transactions are not initialised yet",
                        retriable=True,
                    )
                )
            if self.abort_pending and self.broken is None:
                self._try_abort(min(ABORT_TRY_SECONDS, self.timeout))
                if self.abort_pending:  # not confirmed yet: read again before the next try
                    raise KafkaException(
                        KafkaError(
                            KafkaError._TIMED_OUT,
                            "the previous transaction's abort is not confirmed yet",
                            retriable=True,
                        )
                    )
            self.producer.begin_transaction()
            self.open = True

    def commit(
        self, offsets: list[TopicPartition], group: Callable[[], object], deadline: float | None
    ) -> None:
        """Send ``offsets`` (of the consumer group ``group()``) to the transaction and commit it, retried
        until DELIVERY_TIMEOUT (or ``deadline``); raises CommitFailed after aborting (or marking it
        broken)."""
        producer = self.producer
        end = self._clock() + self.timeout
        if deadline is not None:
            end = min(end, max(deadline, self._clock() + 1.0))
        try:
            if offsets and not self.open:
                # an interval that read records and wrote none (progress records, or records completed
                # before): its offsets still go through a transaction of their own
                self.begin()
            if offsets:
                metadata = group()
                retrying(
                    lambda left: bounded(
                        lambda: producer.send_offsets_to_transaction(offsets, metadata, left),
                        left + OFFSETS_GRACE_SECONDS,
                        "send_offsets_to_transaction",
                        self._heartbeat,
                    ),
                    end,
                    self._clock,
                    lambda err: self.waiting("transaction.retrying", err, what="send_offsets"),
                )
            retrying(
                producer.commit_transaction,
                end,
                self._clock,
                lambda err: self.waiting("transaction.retrying", err, what="commit_transaction"),
            )
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            self._saw(err)
            if not self._report(err, "commit_transaction"):
                self._warn("transaction.failed", error=err.str(), code=err.name(), fatal=err.fatal())
            if err.fatal():  # the producer is unusable (fenced): the conductor replaces it
                self.broken = err
                self.open = False
            else:
                self.abort()
            raise CommitFailed(f"transaction failed: {err.name()}") from exc
        self.open = False

    def waiting(self, event: str, err: KafkaError, **fields: object) -> None:
        """A retriable error while waiting on Kafka: seen, warned, the loop still alive."""
        self._saw(err)
        self._warn(event, error=err.str(), code=err.name(), **fields)
        self._heartbeat()

    def abort(self) -> None:
        """Abort the open transaction (exactly-once); its records are never visible to read_committed.
        One bounded try: if the cluster does not confirm it, it stays pending (``begin`` finishes it)."""
        if self.exactly_once and self.open:
            self.open = False
            if self.broken is not None:  # a broken producer cannot abort: its replacement fences it
                return
            self.abort_pending = True
            self._try_abort(min(ABORT_TRY_SECONDS, self.timeout))

    def _try_abort(self, timeout: float) -> None:
        err = abort_once(self.producer, timeout)
        if err is not None and err.fatal():  # fenced: the replacement producer aborts what this one left
            self.broken = err
        elif err is not None and err.retriable():  # not confirmed yet (coordinator away): again later
            self.waiting("transaction.abort_pending", err)
            return
        elif err is not None:  # anything else (no transaction left to abort): nothing is pending
            self._warn("transaction.abort_failed", error=err.str(), code=err.name())
        self.abort_pending = False

    def replace(self, producer: Producer) -> None:
        """A new producer instead of a broken one (its transactions initialised by the caller)."""
        self.producer = producer
        self.open = False
        self.abort_pending = False
        self.broken = None
        self.initialising = False
