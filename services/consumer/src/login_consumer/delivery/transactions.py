"""Transaction calls through leader and coordinator changes (a broker restarting or killed, three brokers
with min.insync.replicas=2), for the checkpoint (``checkpoint.py``).

librdkafka retries produce requests itself (NOT_LEADER_FOR_PARTITION, NOT_ENOUGH_REPLICAS, ...). A
transaction call that fails with a retriable error (the coordinator moving, a timeout) is called again, as
librdkafka documents, until DELIVERY_TIMEOUT (``retrying``); an error that needs an abort aborts and
rewinds. An abort the cluster did not confirm (it cannot write the abort markers while too few replicas are
in sync) stays pending and is finished before the next transaction begins, tried again until it is
(``abort_once``): nothing is produced outside a transaction, nothing is dead-lettered, the process does not
crash. A fatal error (the producer fenced, as a coordinator move can leave it) marks the producer broken:
the conductor replaces it with a new one of the same transactional id (``producer.py``: init_transactions
fences the old one and aborts its transaction) after rewinding, as Kafka Streams does on a fenced producer.
"""

from __future__ import annotations

from collections.abc import Callable

from confluent_kafka import KafkaError, KafkaException, Producer


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
