"""``login-consumer replay-dlq``: re-feed dead letters to the input topic after a fix.

Reads the dead-letter topic from its beginning up to its end as it was when the command started (a
snapshot: letters that arrive meanwhile are left for the next run), keeps those whose ``dlq-error-type``
is among the wanted types (all when none is given), and produces each, with its original key, value and
headers, to the input topic. The ``dlq-*`` headers are dropped and ``dlq-replayed-from`` names the letter
(``<topic>:<partition>:<offset>``). Nothing is committed and the dead-letter topic is left as it is, so a
replay can be repeated (use --dry-run to count first).

With tracing on, a letter whose trace is sampled gets a ``send <target>`` span (child of the dead letter's
own ``send`` span, ``tracing.trace_replay``) and the replayed record carries its context: the event's
trace goes on through the pipeline a second time. An unsampled letter's context goes on as it was.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from login_common.contract import HEADER_DLQ_ERROR_TYPE, HEADER_DLQ_REPLAYED_FROM
from login_common.kafka import message_headers
from login_common.tracing import Tracing
from login_consumer.config import ConsumerSettings
from login_consumer.errors import ConsumerError
from login_consumer.tracing import trace_replay

log = structlog.get_logger("login_consumer")


@dataclass
class ReplayReport:
    source: str
    target: str
    scanned: int = 0
    moved: int = 0
    skipped: int = 0
    failed: int = 0
    by_type: Counter[str] = field(default_factory=Counter)
    dry_run: bool = False

    def summary(self) -> str:
        verb = "would move" if self.dry_run else "moved"
        types = ", ".join(f"{name}={count}" for name, count in sorted(self.by_type.items())) or "none"
        text = (
            f"replay-dlq: {verb} {self.moved} message(s) from {self.source} to {self.target} "
            f"(scanned {self.scanned}, skipped {self.skipped}; by error type: {types})"
        )
        if self.failed:
            text += f"; {self.failed} NOT delivered"
        return text


def _error_type(msg: Message) -> str:
    for name, value in message_headers(msg):
        if name == HEADER_DLQ_ERROR_TYPE and value is not None:
            return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return "unknown"


def replay_dlq(
    settings: ConsumerSettings,
    *,
    error_types: Collection[str] = (),
    target: str | None = None,
    dry_run: bool = False,
    limit: int = 0,
    timeout: float = 60.0,
    tracing: Tracing | None = None,
) -> ReplayReport:
    """Move dead letters (all, or those of ``error_types``) to ``target`` (default: INPUT_TOPIC)."""
    source = settings.dlq_topic
    report = ReplayReport(source, target or settings.input_topic, dry_run=dry_run)
    wanted = set(error_types)
    consumer = Consumer(
        {
            **settings.kafka_common(),
            "group.id": f"{settings.group_id}-replay-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
        }
    )
    producer: Producer | None = None
    failures: list[str] = []

    def on_delivery(err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            failures.append(err.name())

    if not dry_run:
        producer = Producer(
            {**settings.kafka_common(), "enable.idempotence": True, "acks": "all", "linger.ms": 20}
        )
    deadline = time.monotonic() + timeout
    try:
        metadata = consumer.list_topics(source, timeout=min(10.0, timeout))
        topic = metadata.topics.get(source)
        if topic is None or topic.error is not None:
            raise ConsumerError(f"dead-letter topic {source!r} not found")
        ends: dict[int, int] = {}
        starts: list[TopicPartition] = []
        for partition in topic.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(source, partition), timeout=10)
            if high > low:
                ends[partition] = high
                starts.append(TopicPartition(source, partition, low))
        if starts:
            consumer.assign(starts)
        while ends and time.monotonic() < deadline and not (limit and report.moved >= limit):
            for msg in consumer.consume(500, 0.5):
                if msg.error() is not None:
                    continue
                partition, offset = msg.partition() or 0, msg.offset() or 0
                if partition not in ends or offset >= ends[partition]:
                    continue  # arrived after the snapshot
                report.scanned += 1
                kind = _error_type(msg)
                if (wanted and kind not in wanted) or (limit and report.moved >= limit):
                    report.skipped += 1
                    continue
                report.moved += 1
                report.by_type[kind] += 1
                if producer is None:
                    continue
                headers = [(k, v) for k, v in message_headers(msg) if not k.startswith("dlq-")]
                headers.append((HEADER_DLQ_REPLAYED_FROM, f"{source}:{partition}:{offset}".encode()))
                if tracing is not None:
                    trace_replay(tracing.tracer, msg, headers, target=report.target, error_type=kind)
                while True:
                    try:
                        producer.produce(
                            report.target, msg.value(), msg.key(), headers=headers, on_delivery=on_delivery
                        )
                        break
                    except BufferError:
                        producer.poll(0.1)
            # done with a partition once its position passed the snapshot's end (control records included)
            for tp in consumer.position([TopicPartition(source, p) for p in ends]):
                if tp.offset is not None and tp.offset >= ends[tp.partition]:
                    del ends[tp.partition]
        if ends:
            log.warning("replay.incomplete", partitions_left=sorted(ends), timeout=timeout)
    except KafkaException as exc:
        raise ConsumerError(f"replay failed: {exc}") from exc
    finally:
        if producer is not None:
            left = producer.flush(30)
            report.failed = left + len(failures)
        consumer.close()
    return report
