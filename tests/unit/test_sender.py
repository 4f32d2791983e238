"""The sender's wait for room in the producer's queue is bounded (``delivery/sender.py``).

A real librdkafka producer whose cluster cannot be reached keeps every record queued: its queue fills and
``produce`` raises ``BufferError``. The sender used to serve delivery reports until there was room, which
under a cluster refusing writes could be longer than ``max.poll.interval.ms``: the group dropped the
consumer mid-batch. Now one batch waits at most ``wait`` (DELIVERY_TIMEOUT) and is then refused like a
producer error (a retriable ``_QUEUE_FULL``), and the interval is rewound by the checkpoint.
"""

from __future__ import annotations

import threading
import time

from confluent_kafka import KafkaError, Producer

from login_consumer.delivery.sender import Sender


def _stuck_producer() -> Producer:
    # nothing listens on port 1: every record stays queued, and the queue holds five
    return Producer(
        {
            "bootstrap.servers": "127.0.0.1:1",
            "queue.buffering.max.messages": 5,
            "message.timeout.ms": 600_000,
            "log_level": 0,
        }
    )


def test_a_queue_that_does_not_drain_refuses_the_batch_after_the_wait() -> None:
    producer = _stuck_producer()
    refused: list[KafkaError] = []
    begun: list[bool] = []
    sender = Sender(producer, "dlq", begin=lambda: begun.append(True), refused=refused.append, wait=0.5)
    records = [("out", -1, b"k%d" % n, b"v%d" % n, []) for n in range(20)]
    started = time.monotonic()
    worker = threading.Thread(target=sender.send, args=(records,), daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the sender waited for room with no end"
    assert begun == [True]
    assert [err.code() for err in refused] == [KafkaError._QUEUE_FULL]
    assert refused[0].retriable()
    assert "DELIVERY_TIMEOUT" in refused[0].str()
    assert time.monotonic() - started >= 0.5  # it did wait for room first
    assert len(producer) == 5  # what fitted is queued; the batch is refused as a whole by the checkpoint
    producer.purge()
    producer.flush(0)


def test_each_batch_gets_its_own_wait() -> None:
    producer = _stuck_producer()
    refused: list[KafkaError] = []
    sender = Sender(producer, "dlq", begin=lambda: None, refused=refused.append, wait=0.2)
    for _ in range(2):
        sender.send([("out", -1, b"k", b"v", []) for _ in range(10)])
    assert [err.code() for err in refused] == [KafkaError._QUEUE_FULL] * 2
    producer.purge()
    producer.flush(0)
