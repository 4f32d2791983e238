"""The producer's lifecycle: transactions initialised at start-up, a producer with a fatal error replaced.

A transactional producer whose ``init_transactions`` failed, or any producer that reported a fatal error (a
fenced or refused transactional id, an idempotence failure), can never produce again: librdkafka requires a
new instance. ``ProducerKeeper`` makes it (with the process's callbacks) and hands it to the sender and the
checkpoint; in exactly-once mode it initialises its transactions again, retried with backoff by the caller
while the broker refuses (``operations/retry.py``). The failed interval was aborted and rewound before, so
nothing is lost or written twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaException, Producer

from login_consumer.delivery.checkpoint import Checkpoint
from login_consumer.delivery.sender import Sender

Retry = Callable[[threading.Event, str, Callable[[], None]], bool]  # Retrier.until_done


class ProducerKeeper:
    def __init__(
        self,
        make: Callable[[], Producer],
        checkpoint: Checkpoint,
        sender: Sender,
        *,
        exactly_once: bool,
        log: Any,
    ) -> None:
        self._make = make
        self.checkpoint = checkpoint
        self.sender = sender
        self.exactly_once = exactly_once
        self._log = log

    def init_transactions(self) -> None:
        """init_transactions (a producer it failed on is unusable: the next attempt gets a new one)."""
        if self.checkpoint.transactions.broken is not None:
            self.replace()
        try:
            self.sender.producer.init_transactions(30)
        except KafkaException as exc:
            self.checkpoint.transactions.broken = exc.args[0]
            raise

    def replace(self) -> None:
        self._log.warning("producer.replaced", error=str(self.checkpoint.transactions.broken))
        producer = self._make()
        self.checkpoint.replace_producer(producer)
        self.sender.producer = producer

    def recover(self, stop: threading.Event, retry: Retry) -> None:
        """Replace a broken producer (exactly-once: and initialise its transactions, retried)."""
        if self.checkpoint.transactions.broken is None or stop.is_set():
            return
        if self.exactly_once:
            retry(stop, "init_transactions", self.init_transactions)
        else:
            self.replace()
