"""The producer's lifecycle: transactions initialised at start-up, a producer with a fatal error replaced.

A transactional producer whose ``init_transactions`` failed, or any producer that reported a fatal error (a
fenced or refused transactional id, an idempotence failure), can never produce again: librdkafka requires a
new instance. ``ProducerKeeper`` makes it (with the process's callbacks) and hands it to the sender and the
checkpoint; in exactly-once mode it initialises its transactions again, retried with backoff by the caller
while the broker refuses (``operations/retry.py``), for at most DELIVERY_TIMEOUT at a time (``recover``):
while the transaction coordinator is away (two brokers of three down) the loop goes back to reading, so
that the group does not drop it for exceeding ``max.poll.interval.ms``, and the next failed checkpoint tries
again (a producer not ready refuses the batch). The failed interval was aborted and rewound before, so
nothing is lost or written twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from login_consumer.delivery.checkpoint import Checkpoint
from login_consumer.delivery.sender import Sender


class Retry(Protocol):
    """``Retrier.until_done``."""

    def __call__(
        self, stop: threading.Event, what: str, step: Callable[[], None], *, within: float | None = None
    ) -> bool: ...


class ProducerKeeper:
    def __init__(
        self,
        make: Callable[[], Producer],
        checkpoint: Checkpoint,
        sender: Sender,
        *,
        exactly_once: bool,
        log: Any,
        timeout: float = 30.0,
    ) -> None:
        """``timeout``: DELIVERY_TIMEOUT, the longest one ``init_transactions`` waits, and the longest
        ``recover`` retries it before the loop reads again."""
        self._make = make
        self.checkpoint = checkpoint
        self.sender = sender
        self.exactly_once = exactly_once
        self._log = log
        self.timeout = timeout

    def init_transactions(self) -> None:
        """init_transactions, on a new producer if the last one is broken. A retriable failure (the
        coordinator away, a timeout) keeps the producer: calling it again resumes the same initialisation
        (librdkafka: "retry call to resume"), and until then the producer takes no transaction; any other
        failure makes it unusable, and the next attempt gets a new one."""
        transactions = self.checkpoint.transactions
        if transactions.broken is not None:
            self.replace()
        try:
            self.sender.producer.init_transactions(self.timeout)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.retriable() and not err.fatal():
                transactions.initialising = True
            else:
                transactions.broken = err
            raise
        transactions.initialising = False

    def replace(self) -> None:
        self._log.warning("producer.replaced", error=str(self.checkpoint.transactions.broken))
        producer = self._make()
        self.checkpoint.replace_producer(producer)
        self.sender.producer = producer

    def recover(self, stop: threading.Event, retry: Retry) -> None:
        """Replace a broken producer and, exactly-once, initialise its transactions (or finish initialising
        them), retried for at most ``timeout``: if they are not ready by then, the next failed checkpoint
        tries again, and meanwhile the producer takes no transaction (``Transactions.initialising``)."""
        transactions = self.checkpoint.transactions
        if (transactions.broken is None and not transactions.initialising) or stop.is_set():
            return
        if self.exactly_once:
            retry(stop, "init_transactions", self.init_transactions, within=self.timeout)
        else:
            self.replace()
