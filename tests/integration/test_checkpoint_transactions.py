"""Exactly-once checkpoints against a real broker (``delivery/checkpoint.py``, ``delivery/transactions.py``).

An interval can read records and write none: the network stage reads the user stages' progress records
(and, after a restart, records it completed before) without producing anything. Its offsets must still be
committed, through a transaction of their own; before the fix the commit sent them to a transaction that
was never begun (librdkafka: "Operation not valid in state Ready", _STATE), failed the checkpoint and
rewound the consumer, restoring its state from the changelogs, every time the pipeline was idle.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from login_consumer.delivery.checkpoint import Checkpoint

pytestmark = pytest.mark.integration


def test_an_interval_that_wrote_nothing_commits_its_offsets_in_a_transaction_of_its_own(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    topic, group = topic_factory("progress-only"), group_factory("eos-idle")
    seed = Producer({"bootstrap.servers": kafka})
    for n in range(3):
        seed.produce(topic, value=b"progress %d" % n, partition=0)
    assert seed.flush(10) == 0
    consumer = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": group,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = Producer({"bootstrap.servers": kafka, "transactional.id": f"{group}-{uuid.uuid4().hex[:6]}"})
    producer.init_transactions(30)
    warnings: list[tuple[str, dict[str, Any]]] = []
    checkpoint = Checkpoint(
        consumer,
        producer,
        exactly_once=True,
        interval=0.2,
        delivery_timeout=20.0,
        warn=lambda event, **kw: warnings.append((event, kw)),
    )
    try:
        consumer.subscribe([topic])
        read: list[int] = []
        deadline = time.monotonic() + 30
        while len(read) < 3 and time.monotonic() < deadline:
            read += [m.offset() or 0 for m in consumer.consume(10, 0.5) if m.error() is None]
        assert read == [0, 1, 2]
        checkpoint.progress.processed((topic, 0), 0, 3)  # read, nothing produced: no transaction is open
        assert not checkpoint.transactions.open
        assert checkpoint.commit(sync=True) == 1
        assert warnings == []
        (committed,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == 3
        # and the next interval, with records produced, still commits as usual
        checkpoint.begin()
        producer.produce(topic, value=b"output", partition=0)
        checkpoint.progress.processed((topic, 0), 3, 4)
        assert checkpoint.commit(sync=True) == 1
    finally:
        consumer.close()
