"""The consume -> process -> route -> commit loop.

At-least-once (default): a batch's outputs and dead letters are produced (idempotent, acks=all), flushed,
and only when the broker acknowledged every one of them are the batch's offsets committed. A batch that
is not fully acknowledged is not committed: the consumer seeks back to its first offsets and processes it
again (duplicates, never losses).

Exactly-once (PROCESSING_GUARANTEE=exactly-once): each batch is one Kafka transaction holding its
outputs, its dead letters and its input offsets (``send_offsets_to_transaction``); a read_committed
reader sees every input's result once. A failed transaction is aborted and the batch processed again.

Rebalances: offsets are committed on revocation; detectors hear about assignments and revocations.
Stop (SIGTERM/SIGINT sets ``stop``): the batch in hand is finished, offsets committed, the group left.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

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
from login_consumer import __version__
from login_consumer.access import AccessFailures
from login_consumer.align import Aligner
from login_consumer.config import ConsumerSettings
from login_consumer.detect import Detectors, PartitionRef, StateChangelog, build_detectors
from login_consumer.metrics import ConsumerMetrics
from login_consumer.process import BatchResult, Processor
from login_consumer.validate import Invalid

log = structlog.get_logger("login_consumer")

REFRESH_SECONDS: Final = 1.0  # lag and detector state sizes
LIVENESS_SECONDS: Final = 60.0  # /healthz fails when the loop has not turned for this long
RETRY_BACKOFF_SECONDS: Final = 1.0
LOG_ACCESS_SECONDS: Final = 10.0  # a transactional id refused: report it this often until stopped
_MAX_DETAIL: Final = 500

TP = tuple[str, int]


class KafkaLogs:
    """librdkafka's own log lines, through structlog (JSON in containers) instead of raw stderr."""

    _METHODS: Final = {10: "debug", 20: "info", 30: "warning", 40: "error", 50: "critical"}

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def log(self, level: int, fmt: str, *args: object) -> None:
        method = self._METHODS.get(level - level % 10, "warning")
        getattr(self._logger, method)("librdkafka", message=fmt % args if args else fmt)


def dlq_headers(msg: Message, why: Invalid, now_ms: int) -> list[tuple[str, bytes | str | None]]:
    """The input's own headers, then the dead-letter headers."""
    headers: list[tuple[str, bytes | str | None]] = message_headers(msg)
    headers += [
        (HEADER_DLQ_ERROR_TYPE, why.error_type.encode()),
        (HEADER_DLQ_ERROR_DETAIL, why.detail[:_MAX_DETAIL].encode("utf-8", "replace")),
        (HEADER_DLQ_SOURCE_TOPIC, str(msg.topic()).encode()),
        (HEADER_DLQ_SOURCE_PARTITION, str(msg.partition()).encode()),
        (HEADER_DLQ_SOURCE_OFFSET, str(msg.offset()).encode()),
        (HEADER_DLQ_CONSUMER_VERSION, __version__.encode()),
        (HEADER_DLQ_TIME, str(now_ms).encode()),
    ]
    return headers


def _offsets(messages: Sequence[Message]) -> tuple[dict[TP, int], dict[TP, int]]:
    """(first offset, next offset to commit) per partition of a batch."""
    first: dict[TP, int] = {}
    following: dict[TP, int] = {}
    for msg in messages:
        tp = (msg.topic() or "", msg.partition() or 0)
        offset = msg.offset() or 0
        if tp not in first:
            first[tp] = offset
        following[tp] = offset + 1
    return first, following


def _tps(offsets: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in offsets.items()]


class ConsumerApp:
    def __init__(
        self,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        *,
        detectors: Detectors | None = None,
        processor: Processor | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.detectors = detectors if detectors is not None else build_detectors(settings)
        self.processor = processor or Processor.from_settings(settings, self.detectors)
        # detectors that keep their state in a changelog topic: written with each batch, before its commit
        self._changelog = self.detectors if isinstance(self.detectors, StateChangelog) else None
        self._aligner = (
            Aligner(
                max_wait=settings.alignment_max_wait_ms / 1000.0,
                max_buffered=settings.alignment_max_buffered,
            )
            if settings.event_time_alignment
            else None
        )
        self._paused: set[TP] = set()
        self.assigned = threading.Event()
        self.exactly_once = settings.exactly_once
        self._log = log.bind(
            group=settings.group_id, topic=settings.input_topic, guarantee=settings.processing_guarantee
        )
        kafka_logs = KafkaLogs(self._log)
        self._access = AccessFailures(metrics, self._log, settings.sasl_username)
        self._consumer = Consumer(
            {
                **settings.consumer_config(),
                "on_commit": self._on_commit,
                "error_cb": self._on_error,
                "logger": kafka_logs,
            }
        )
        self._producer = Producer(
            {
                **settings.producer_config(),
                "on_delivery": self._on_delivery,
                "error_cb": self._on_error,
                "logger": kafka_logs,
            }
        )
        self._assignment: set[TP] = set()
        self._positions: dict[TP, int] = {}  # next offsets whose outputs are acknowledged
        self._delivery_failures = 0
        self._last_delivery_error = ""
        self._error_logged: dict[str, float] = {}
        self._alive_at = time.monotonic()
        self._running = False
        self._refreshed_at = 0.0
        self._stop_deadline: float | None = None

    # ------------------------------------------------------------------ health

    def alive(self) -> tuple[bool, str]:
        """False when the loop has not turned for LIVENESS_SECONDS (stuck), else True."""
        idle = time.monotonic() - self._alive_at
        if self._running and idle > LIVENESS_SECONDS:
            return False, f"processing loop stalled for {idle:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        refused = self._access.blocked()
        if refused:
            return False, refused
        if self._running and self.assigned.is_set():
            return True, f"in group, {len(self._assignment)} partition(s)"
        return False, "not in the group yet"

    # ------------------------------------------------------------------ callbacks (run inside poll/consume)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # delivery.report.only.error: called for failures only
            self._access.check(err, "produce")
            self._delivery_failures += 1
            self._last_delivery_error = err.name()

    def _on_commit(self, err: KafkaError | None, partitions: list[TopicPartition]) -> None:
        failed = err is not None or any(p.error is not None for p in partitions or [])
        if failed:
            self.metrics.commit_failures.inc()
            self.metrics.errors.labels("commit").inc()
            self._warn("commit.failed", error=str(err or next(p.error for p in partitions if p.error)))

    def _on_error(self, err: KafkaError) -> None:
        if self._access.check(err, "client"):
            return
        self.metrics.errors.labels("kafka").inc()
        self._warn("kafka.error", error=err.str(), code=err.name(), fatal=err.fatal())

    def _warn(self, event: str, **fields: Any) -> None:
        """Log a warning, at most once per 10 s per event name (errors repeat while a broker is down)."""
        now = time.monotonic()
        if now - self._error_logged.get(event, -1e9) >= 10.0:
            self._error_logged[event] = now
            self._log.warning(event, **fields)

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assign").inc()
        refs = [PartitionRef(p.topic, p.partition) for p in partitions]
        self._assignment.update((r.topic, r.partition) for r in refs)
        self.metrics.assigned_partitions.set(len(self._assignment))
        try:
            self.detectors.on_assign(refs)
        except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
            self.metrics.errors.labels("processing").inc()
            self._log.error("detectors.on_assign_failed", error=repr(exc)[:300])
        self.assigned.set()
        self._log.info("partitions.assigned", partitions=sorted(p.partition for p in partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        if not self.exactly_once:
            self._commit_sync({tp: o for tp, o in self._positions.items() if tp in gone})
        self._forget(gone, lost=False)
        self._log.info("partitions.revoked", partitions=sorted(p for _, p in gone))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        self._forget(gone, lost=True)
        self._log.warning("partitions.lost", partitions=sorted(p for _, p in gone))

    def _forget(self, gone: set[TP], *, lost: bool) -> None:
        try:
            self.detectors.on_revoke([PartitionRef(t, p) for t, p in sorted(gone)], lost=lost)
        except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
            self.metrics.errors.labels("processing").inc()
            self._log.error("detectors.on_revoke_failed", error=repr(exc)[:300])
        if self._aligner is not None:
            self._aligner.drop(gone)
            self._paused -= gone
        self._assignment -= gone
        for tp in gone:
            self._positions.pop(tp, None)
        self.metrics.assigned_partitions.set(len(self._assignment))
        self.metrics.lag.set({tp: lag for tp, lag in self.metrics.lag.snapshot().items() if tp not in gone})

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        settings = self.settings
        self._running = True
        self._alive_at = time.monotonic()
        self._consumer.subscribe(
            [settings.input_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        if self.exactly_once and not self._init_transactions(stop):
            self._running = False
            with suppress(KafkaException, RuntimeError):  # the producer is dead (fatal): only leave
                self._consumer.close()
            return
        self._log.info("consumer.running", batch_size=settings.batch_size)
        try:
            while not stop.is_set():
                ready = self._aligner is not None and self._aligner.ready  # held messages can go now
                messages = self._consumer.consume(settings.batch_size, 0 if ready else settings.poll_timeout)
                self._alive_at = time.monotonic()
                if self._aligner is not None and (len(self._assignment) > 1 or self._aligner.buffered):
                    messages = self._align(messages)
                if messages:
                    self._handle(messages, stop)
                if self._alive_at - self._refreshed_at >= REFRESH_SECONDS:
                    self._refresh()
        finally:
            self._close(stop)

    def _init_transactions(self, stop: threading.Event) -> bool:
        """init_transactions; a refused transactional id is reported and waited out (no crash loop)."""
        try:
            self._producer.init_transactions(30)
        except KafkaException as exc:
            if not self._access.check(exc.args[0], "init_transactions"):
                raise
            while not stop.wait(LOG_ACCESS_SECONDS):  # the producer is unusable: report until stopped
                self._alive_at = time.monotonic()  # alive and saying why it does nothing: no restart loop
                self._access.check(exc.args[0], "init_transactions")
            return False
        return True

    def _align(self, messages: list[Message]) -> list[Message]:
        """Hold messages back until they can go in event-time order across partitions (align.py)."""
        aligner = self._aligner
        assert aligner is not None  # noqa: S101 - called only with an aligner
        errors = [msg for msg in messages if msg.error() is not None]
        aligner.add(msg for msg in messages if msg.error() is None)
        before = (aligner.forced, aligner.timeouts)
        busy = len(messages) >= self.settings.batch_size
        released = aligner.release(self._assignment, self._at_end, busy=busy, limit=self.settings.batch_size)
        if (aligner.forced, aligner.timeouts) != before:
            self._warn("alignment.out_of_order", **aligner.snapshot())
        crowded = set(aligner.crowded(sorted(self._assignment)))
        share = aligner.max_buffered // max(1, len(self._assignment))
        calm = {tp for tp in self._paused if aligner.holding(tp) <= share // 2}
        try:
            if crowded - self._paused:
                self._consumer.pause([TopicPartition(t, n) for t, n in crowded - self._paused])
                self._paused |= crowded
            if calm:
                self._consumer.resume([TopicPartition(t, n) for t, n in calm])
                self._paused -= calm
        except KafkaException as exc:
            self._warn("pause.failed", error=str(exc))
        return errors + released

    def _at_end(self, tp: TP) -> bool:
        """True when every message of the partition that the broker had at the last fetch was read."""
        part = TopicPartition(tp[0], tp[1])
        try:
            low, high = self._consumer.get_watermark_offsets(part, cached=True)
            position = self._consumer.position([part])[0].offset
        except KafkaException:
            return False
        if high < 0:
            return False
        return position >= high if position >= 0 else high == low

    def _handle(self, messages: list[Message], stop: threading.Event) -> None:
        good: list[Message] = []
        for msg in messages:
            err = msg.error()
            if err is None:
                good.append(msg)
            elif err.code() != KafkaError._PARTITION_EOF and not self._access.check(err, "consume"):
                self.metrics.errors.labels("kafka").inc()
                self._warn("consume.error", error=err.str(), code=err.name())
        if not good:
            return
        result = self.processor.process(good)
        first, following = _offsets(good)
        if self.exactly_once:
            delivered = self._deliver_in_transaction(result, following, stop)
        else:
            delivered = self._deliver(result, following, stop)
        if not delivered:
            self._rewind(first, stop)
            return
        acked_ms = time.time() * 1000.0
        self.metrics.record_batch(result.stats, len(result.outputs))
        created = Counter(msg.timestamp() for msg, _, _, _ in result.outputs)  # (type, ms); repeats a lot
        latencies: Counter[float] = Counter()
        for (kind, ms), count in created.items():
            if kind != 0:  # TIMESTAMP_NOT_AVAILABLE
                latencies[max(0.0, (acked_ms - ms) / 1000.0)] += count
        self.metrics.latency.observe_counts(latencies)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
        produce = self._producer.produce
        while True:
            try:
                produce(topic, value, key, headers=headers)
                return
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)

    def _produce_batch(self, result: BatchResult) -> None:
        output = self.settings.output_topic
        produce = self._producer.produce
        for _msg, key, value, headers in result.outputs:
            try:
                produce(output, value, key, headers=headers)
            except BufferError:
                self._produce(output, value, key, headers)
        if result.dead:
            now_ms = int(time.time() * 1000)
            for msg, why in result.dead:
                self._produce(self.settings.dlq_topic, msg.value(), msg.key(), dlq_headers(msg, why, now_ms))
        if self._changelog is not None:
            try:
                changes = self._changelog.changes()
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
                self.metrics.errors.labels("processing").inc()
                self._log.error("detectors.changes_failed", error=repr(exc)[:300])
                changes = []
            for topic, partition, state_key, state_value in changes:
                while True:
                    try:
                        produce(topic, state_value, state_key, partition)
                        break
                    except BufferError:
                        self._producer.poll(0.05)

    def _flush(self, stop: threading.Event) -> int:
        """Wait for acknowledgements (up to DELIVERY_TIMEOUT, less once stopping); messages left."""
        deadline = time.monotonic() + self.settings.delivery_timeout
        remaining = len(self._producer)
        while remaining and time.monotonic() < deadline:
            if stop.is_set():
                deadline = min(deadline, self._stopping_deadline())
            remaining = self._producer.flush(max(0.0, min(0.5, deadline - time.monotonic())))
        return remaining

    def _stopping_deadline(self) -> float:
        if self._stop_deadline is None:
            self._stop_deadline = time.monotonic() + self.settings.shutdown_timeout * 0.6
        return self._stop_deadline

    def _deliver(self, result: BatchResult, following: dict[TP, int], stop: threading.Event) -> bool:
        self._delivery_failures = 0
        self._produce_batch(result)
        remaining = self._flush(stop)
        if remaining or self._delivery_failures:
            self.metrics.errors.labels("delivery").inc(remaining + self._delivery_failures)
            self._warn(
                "batch.not_acknowledged",
                unacknowledged=remaining,
                failed=self._delivery_failures,
                error=self._last_delivery_error,
            )
            return False
        self._positions.update(following)
        try:
            self._consumer.commit(offsets=_tps(following), asynchronous=True)
        except KafkaException as exc:
            self.metrics.commit_failures.inc()
            self.metrics.errors.labels("commit").inc()
            self._warn("commit.failed", error=str(exc))
        return True

    def _deliver_in_transaction(
        self, result: BatchResult, following: dict[TP, int], stop: threading.Event
    ) -> bool:
        producer = self._producer
        timeout = self.settings.delivery_timeout
        try:
            producer.begin_transaction()
            self._produce_batch(result)
            producer.send_offsets_to_transaction(
                _tps(following), self._consumer.consumer_group_metadata(), timeout
            )
            producer.commit_transaction(timeout)
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            self.metrics.errors.labels("delivery").inc()
            self._warn("transaction.failed", error=err.str(), code=err.name(), fatal=err.fatal())
            if err.fatal():
                raise
            with suppress(KafkaException):
                producer.abort_transaction(timeout)
            return False
        self._positions.update(following)
        return True

    def _rewind(self, first: dict[TP, int], stop: threading.Event) -> None:
        """Seek back to a batch's first offsets so it is processed again (after a short pause)."""
        if self._changelog is not None:  # undo the batch's effect on the detector state
            try:
                self._changelog.rewind([PartitionRef(t, p) for t, p in first if (t, p) in self._assignment])
            except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
                self.metrics.errors.labels("processing").inc()
                self._log.error("detectors.rewind_failed", error=repr(exc)[:300])
        if self._aligner is not None:  # what it holds of these partitions comes again after the seek
            self._aligner.drop(first)
        for tp in _tps(first):
            if (tp.topic, tp.partition) in self._assignment:
                try:
                    self._consumer.seek(tp)
                except KafkaException as exc:
                    self._warn("seek.failed", error=str(exc))
        stop.wait(RETRY_BACKOFF_SECONDS)

    def _commit_sync(self, offsets: dict[TP, int]) -> None:
        if not offsets:
            return
        try:
            self._consumer.commit(offsets=_tps(offsets), asynchronous=False)
        except KafkaException as exc:
            self.metrics.commit_failures.inc()
            self.metrics.errors.labels("commit").inc()
            self._warn("commit.failed", error=str(exc), sync=True)

    def _refresh(self) -> None:
        """Lag per assigned partition (cached watermarks, no broker round trip) and detector state sizes."""
        self._refreshed_at = time.monotonic()
        if self._assignment:
            lag: dict[TP, int] = {}
            try:
                positions = self._consumer.position([TopicPartition(t, p) for t, p in self._assignment])
                for tp in positions:
                    _low, high = self._consumer.get_watermark_offsets(tp, cached=True)
                    if high >= 0 and tp.offset >= 0:
                        lag[(tp.topic, tp.partition)] = max(0, high - tp.offset)
            except KafkaException as exc:
                self._warn("lag.failed", error=str(exc))
            self.metrics.lag.set(lag)
        with suppress(Exception):
            self.metrics.set_state_sizes(self.detectors.state_sizes())

    def _close(self, stop: threading.Event) -> None:
        self._running = False
        self.assigned.clear()
        try:
            if not self.exactly_once:
                self._commit_sync(dict(self._positions))
            self._consumer.close()  # leaves the group (revocation commits again, harmlessly)
        except (KafkaException, RuntimeError) as exc:
            self._log.warning("consumer.close_failed", error=str(exc))
        left = self._producer.flush(2.0 if stop.is_set() else 10.0)
        if left:
            self._log.warning("producer.unflushed", messages=left)
        self._log.info("consumer.closed")
