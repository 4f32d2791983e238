"""Contenders of `make bench` that are not login-consumer, each run as its own process by harness.py.

They read the consumer's environment contract (BOOTSTRAP_SERVERS, INPUT_TOPIC, OUTPUT_TOPIC, DLQ_TOPIC,
GROUP_ID, BATCH_SIZE) and run until SIGTERM/SIGINT:

* ``passthrough``: confluent-kafka consume -> produce with the consumer's batching and producer settings
  (batches of BATCH_SIZE, idempotent producer, acks=all, lz4, linger.ms 5) and nothing in between; the
  offsets of what the broker acknowledged are committed about once a second. What a Python consume ->
  produce loop costs before any processing.
* ``seed-loop``: a REIMPLEMENTATION of the seed project's consumer loop (its code is not in this
  repository): kafka-python-ng, ``json.loads`` per message, a few stateless flags, then
  ``producer.send(...).get()`` and ``producer.flush()`` for every message — one broker round trip per
  event. Measured on a bounded sample because it is slow.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import sys
import threading
import time
from typing import Any

_STOP = threading.Event()


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if value is None:
        raise SystemExit(f"bench contender: {name} is not set")
    return value


def _on_signal(signum: int, frame: object) -> None:
    _STOP.set()


def passthrough() -> int:
    from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

    bootstrap = _env("BOOTSTRAP_SERVERS")
    output = _env("OUTPUT_TOPIC")
    batch = int(_env("BATCH_SIZE", "1000"))
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": _env("GROUP_ID"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": "lz4",
            "linger.ms": 5,
        }
    )
    consumer.subscribe([_env("INPUT_TOPIC")])
    # The offset to commit per input partition, once every output produced before it is acknowledged:
    # a snapshot of the consumed positions waits for the producer queue to drain past it.
    pending: list[tuple[int, dict[tuple[str, int], int]]] = []
    positions: dict[tuple[str, int], int] = {}
    produced = 0
    delivered_count = [0]

    def count(err: KafkaError | None, msg: Message) -> None:
        if err is None:
            delivered_count[0] += 1

    last_snapshot = time.monotonic()
    while not _STOP.is_set():
        msgs = consumer.consume(batch, 0.5)
        for m in msgs:
            if m.error() is not None:
                continue
            while True:
                try:
                    producer.produce(output, m.value(), m.key(), headers=m.headers(), on_delivery=count)
                    break
                except BufferError:
                    producer.poll(0.05)
            produced += 1
            positions[(m.topic() or "", m.partition() or 0)] = (m.offset() or 0) + 1
        producer.poll(0)
        now = time.monotonic()
        if now - last_snapshot >= 1.0 and positions:
            pending.append((produced, dict(positions)))
            last_snapshot = now
        while pending and delivered_count[0] >= pending[0][0]:
            _, offsets = pending.pop(0)
            consumer.commit(
                offsets=[TopicPartition(t, p, o) for (t, p), o in offsets.items()], asynchronous=True
            )
    producer.flush(5)
    if positions and delivered_count[0] >= produced:
        consumer.commit(
            offsets=[TopicPartition(t, p, o) for (t, p), o in positions.items()], asynchronous=False
        )
    consumer.close()
    return 0


def _seed_flags(event: dict[str, Any]) -> dict[str, Any]:
    """Seed-like stateless processing: a processing time stamp and four flags."""
    out = dict(event)
    out["processed_at"] = time.time()
    try:
        out["private_ip"] = ipaddress.ip_address(str(event.get("ip"))).is_private
    except ValueError:
        out["private_ip"] = None
    out["missing_device_type"] = "device_type" not in event
    out["mobile"] = str(event.get("device_type", "")).lower() in ("android", "ios")
    out["old_app"] = str(event.get("app_version", "")) < "2.3.0"
    return out


def seed_loop() -> int:
    from kafka import KafkaConsumer, KafkaProducer

    bootstrap = _env("BOOTSTRAP_SERVERS")
    output, dlq = _env("OUTPUT_TOPIC"), _env("DLQ_TOPIC")
    consumer = KafkaConsumer(
        _env("INPUT_TOPIC"),
        bootstrap_servers=bootstrap,
        group_id=_env("GROUP_ID"),
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        consumer_timeout_ms=500,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    while not _STOP.is_set():
        for message in consumer:  # ends after consumer_timeout_ms without messages
            try:
                data = json.loads(message.value)
                value, topic = json.dumps(_seed_flags(data)).encode(), output
            except (ValueError, TypeError, AttributeError):
                value, topic = message.value, dlq
            producer.send(topic, value=value, key=message.key).get(timeout=30)
            producer.flush()
            if _STOP.is_set():
                break
    consumer.close()
    producer.close(5)
    return 0


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    commands = {"passthrough": passthrough, "seed-loop": seed_loop}
    if len(argv) != 1 or argv[0] not in commands:
        print(f"usage: bench_contenders.py {{{'|'.join(commands)}}}", file=sys.stderr)
        return 2
    return commands[argv[0]]()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
