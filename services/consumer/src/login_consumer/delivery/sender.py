"""The producer side: every record the stages make goes out here, without waiting for acknowledgements.

Outputs, repartition and progress records go to their topic as they are; a dead letter goes to
``DLQ_TOPIC`` with the input's own headers (its trace context continued: ``tracing.py``) followed by the
dead-letter headers (``dlq_headers``: error type
and detail, source topic, partition and offset, consumer version, time); a changelog record goes to its
store's changelog partition. When the producer's local queue is full the sender serves delivery reports
until there is room (``BufferError``), for at most DELIVERY_TIMEOUT per batch (``wait``): a queue that does
not drain (the cluster refusing writes) refuses the batch like a producer error, so that the loop reads
again within ``max.poll.interval.ms`` and keeps its partitions (``config.WAITS_PER_READ``); acknowledgements
are checked per checkpoint (``delivery/checkpoint.py``), which also opens the interval's transaction before
the first record (``begin``) in exactly-once mode. A producer that raises instead of queueing (a refused
transaction, a fatal error) stops the batch and tells the checkpoint, which then rewinds the interval:
nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from login_common.contract import (
    HEADER_DLQ_CONSUMER_VERSION,
    HEADER_DLQ_ERROR_DETAIL,
    HEADER_DLQ_ERROR_TYPE,
    HEADER_DLQ_SOURCE_OFFSET,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_TIME,
)
from login_common.kafka import message_headers
from login_common.tracing import replace_context
from login_consumer import __version__
from login_consumer.records import Record, StateRecord
from login_consumer.validate import Invalid

MAX_DETAIL: Final = 500  # characters of an error's detail kept in its dead letter's header


def dlq_headers(msg: Message, why: Invalid, now_ms: int) -> list[tuple[str, bytes | str | None]]:
    """The input's own headers (its trace context replaced by the dead letter's own when a stage traced
    it: ``Invalid.trace``), then the dead-letter headers."""
    headers: list[tuple[str, bytes | str | None]] = message_headers(msg)
    if why.trace:
        replace_context(headers, why.trace)
    headers += [
        (HEADER_DLQ_ERROR_TYPE, why.error_type.encode()),
        (HEADER_DLQ_ERROR_DETAIL, why.detail[:MAX_DETAIL].encode("utf-8", "replace")),
        (HEADER_DLQ_SOURCE_TOPIC, str(msg.topic()).encode()),
        (HEADER_DLQ_SOURCE_PARTITION, str(msg.partition()).encode()),
        (HEADER_DLQ_SOURCE_OFFSET, str(msg.offset()).encode()),
        (HEADER_DLQ_CONSUMER_VERSION, __version__.encode()),
        (HEADER_DLQ_TIME, str(now_ms).encode()),
    ]
    return headers


class Sender:
    def __init__(
        self,
        producer: Producer,
        dlq_topic: str,
        *,
        begin: Callable[[], None],
        refused: Callable[[KafkaError], None],
        wait: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``begin``: called before each non-empty send (opens the checkpoint's transaction); ``refused``:
        told when the producer raises instead of queueing (a refused or fatal producer, a transaction in
        error): the rest of the batch is not sent, and the interval is rewound; ``wait``: the longest one
        batch waits for room in the producer's queue (DELIVERY_TIMEOUT)."""
        self.producer = producer
        self.dlq_topic = dlq_topic
        self._begin = begin
        self._refused = refused
        self.wait = wait
        self._clock = clock
        self._until: float | None = None  # the current batch's end of waiting for room (set when it waits)

    def __len__(self) -> int:
        """Records handed over and not yet acknowledged."""
        return len(self.producer)

    def send(
        self,
        records: Sequence[Record],
        dead: Sequence[tuple[Message, Invalid]] = (),
        changes: Sequence[StateRecord] = (),
    ) -> None:
        """Hand a batch's records to the producer (no waiting: acknowledgements are checked per interval)."""
        if not (records or dead or changes):
            return
        self._until = None
        try:
            self._begin()
            self._send(records, dead, changes)
        except KafkaException as exc:
            self._refused(exc.args[0])

    def _send(
        self,
        records: Sequence[Record],
        dead: Sequence[tuple[Message, Invalid]],
        changes: Sequence[StateRecord],
    ) -> None:
        produce = self.producer.produce
        for topic, partition, key, value, headers in records:
            try:
                produce(topic, value, key, partition, headers=headers)
            except BufferError:
                self._produce_waiting(topic, value, key, partition, headers)
        if dead:
            now_ms = int(time.time() * 1000)
            dlq = self.dlq_topic
            for msg, why in dead:
                self._produce_waiting(dlq, msg.value(), msg.key(), -1, dlq_headers(msg, why, now_ms))
        for topic, partition, state_key, state_value in changes:
            try:
                produce(topic, state_value, state_key, partition)
            except BufferError:
                self._produce_waiting(topic, state_value, state_key, partition, None)

    def _produce_waiting(
        self, topic: str, value: bytes | None, key: bytes | None, partition: int, headers: Any
    ) -> None:
        if self._until is None:
            self._until = self._clock() + self.wait
        while True:
            try:
                self.producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:  # local queue full: let deliveries drain, for a while
                if self._clock() >= self._until:
                    raise KafkaException(
                        KafkaError(
                            KafkaError._QUEUE_FULL,
                            f"the producer's queue did not drain in {self.wait:g}s (DELIVERY_TIMEOUT)",
                            retriable=True,
                        )
                    ) from None
                self.serve(0.05)

    def serve(self, timeout: float = 0.0) -> None:
        """Serve delivery reports and transaction events (a fatal error raised here is reported)."""
        try:
            self.producer.poll(timeout)
        except KafkaException as exc:
            self._refused(exc.args[0])
