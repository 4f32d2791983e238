"""The consumer process: one Kafka consumer and one producer running every stage of the topology.

Topology (docs/consumer.md):

    user-login ──▶ user stage ──▶ <GROUP_ID>-network-repartition ──▶ network stage ──▶ processed-logins
    (by user)      validate, enrich,        (by network)                credential_stuffing
                   per-user detectors, score
                   └──▶ dead letters                                    └──▶ dead letters

With credential_stuffing off there is no network stage and the user stage writes to the output topic.
The consumer subscribes to the input topic and the repartition topic in one group (``GROUP_ID``): N copies
of the process share the partitions of both, as Kafka Streams instances do, and each partition's state
(``stores/``) is restored from its changelog when it is assigned.

Delivery is pipelined (``delivery/checkpoint.py``): records go to the producer as batches are processed,
the loop keeps consuming, and progress is committed every ``COMMIT_INTERVAL_MS``, on revocation and on
stop: at-least-once commits the offsets whose outputs are all acknowledged; exactly-once commits one
transaction holding the interval's outputs, repartition and changelog records and the offsets of both
stages' inputs. Batches come from what the client has already fetched (up to ``BATCH_SIZE``); the loop
waits only when nothing is there. Above ``MAX_IN_FLIGHT`` unacknowledged records the input partitions are
paused until half of them are acknowledged.

Stop (SIGTERM/SIGINT sets ``stop``): the batch in hand is finished, progress committed, the group left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from contextlib import suppress
from typing import Any, Final

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

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
from login_consumer.delivery.checkpoint import Checkpoint, CommitFailed
from login_consumer.delivery.cluster import ClusterHealth
from login_consumer.delivery.topics import InternalTopicError, admin_client, ensure_repartition_topic, purge
from login_consumer.detect import Detectors, PartitionRef, StateChangelog
from login_consumer.detectors import NetworkDetector, build_detectors, build_network_detector
from login_consumer.metrics import ConsumerMetrics
from login_consumer.process import Processor
from login_consumer.stages.network import NetworkStage
from login_consumer.stages.user import Record, UserStage
from login_consumer.validate import Invalid

log = structlog.get_logger("login_consumer")

REFRESH_SECONDS: Final = 1.0  # lag and detector state sizes
LIVENESS_SECONDS: Final = 60.0  # /healthz fails when the loop has not turned for this long
RETRY_BACKOFF_SECONDS: Final = 1.0
PURGE_SECONDS: Final = 30.0  # how often consumed repartition records are deleted
PROGRESS_SECONDS: Final = 0.5  # longest silence about an owned input partition towards the network stage
MERGE_WAIT_FACTOR: Final = 5  # the network stage's merge waits this many ALIGNMENT_MAX_WAIT_MS for a source
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


def _spans(messages: Sequence[Message]) -> dict[TP, tuple[int, int]]:
    """(first offset, next offset) per partition of a batch."""
    spans: dict[TP, tuple[int, int]] = {}
    for msg in messages:
        tp = (msg.topic() or "", msg.partition() or 0)
        offset = msg.offset() or 0
        first = spans.get(tp)
        spans[tp] = (offset if first is None else first[0], offset + 1)
    return spans


class ConsumerApp:
    def __init__(
        self,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        *,
        detectors: Detectors | None = None,
        processor: Processor | None = None,
        network: NetworkDetector | bool | None = True,
    ) -> None:
        """``detectors``/``processor``: the user stage's (default: from the settings); ``network``: the
        network stage's detector, True to build it from the settings, None/False for no network stage."""
        self.settings = settings
        self.metrics = metrics
        self.detectors = detectors if detectors is not None else build_detectors(settings)
        self.processor = processor or Processor.from_settings(settings, self.detectors)
        if network is True:
            network = build_network_detector(settings)
        self.network: NetworkDetector | None = network or None
        self.input_topic = settings.input_topic
        self.repartition_topic = settings.repartition_topic() if self.network is not None else None
        self.user_stage = UserStage(
            self.processor,
            output_topic=settings.output_topic,
            repartition_topic=self.repartition_topic,
            stuffing_prefix=settings.stuffing_prefix,
        )
        self.network_stage = (
            NetworkStage(
                self.network,
                self.processor.risk,
                output_topic=settings.output_topic,
                exactly_once=settings.exactly_once,
                # a source's owner may be restoring state after a rebalance: wait longer than the
                # aligner does for a silent partition before giving up on event-time order
                max_wait=MERGE_WAIT_FACTOR * settings.alignment_max_wait_ms / 1000.0,
                max_buffered=settings.alignment_max_buffered,
            )
            if self.network is not None
            else None
        )
        self._progress_at: dict[int, float] = {}  # input partition -> when its progress was last written
        self._progress_all_at = 0.0
        # detectors that keep their state in a changelog topic: their records go with the outputs
        self._changelog = self.detectors if isinstance(self.detectors, StateChangelog) else None
        self._aligner = (
            Aligner(
                max_wait=settings.alignment_max_wait_ms / 1000.0,
                max_buffered=settings.alignment_max_buffered,
            )
            if settings.event_time_alignment
            else None
        )
        self._paused: set[TP] = set()  # paused by the aligner
        self._throttled = False  # every partition paused: too many records in flight
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
        self._producer_config = {
            **settings.producer_config(),
            "on_delivery": self._on_delivery,
            "error_cb": self._on_error,
            "logger": kafka_logs,
        }
        self.health = ClusterHealth(settings, metrics)  # the cluster's state for /ready and metrics
        self.checkpoint = Checkpoint(
            self._consumer,
            Producer(self._producer_config),
            exactly_once=self.exactly_once,
            renew=self._renew_producer if self.exactly_once else None,
            interval=settings.commit_interval_ms / 1000.0,
            delivery_timeout=settings.delivery_timeout,
            warn=self._warn,
            saw=self.health.saw,
            heartbeat=self._beat,
        )
        self._admin: AdminClient | None = None
        self._committed_repartition: dict[TP, int] = {}
        self._purged_at = time.monotonic()
        self._assignment: set[TP] = set()
        self._starts: dict[TP, int] = {}  # committed offsets of the input partitions at assignment
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

    @property
    def _producer(self) -> Producer:
        """The output producer: the checkpoint's (a fenced transactional producer is replaced there)."""
        return self.checkpoint.producer

    def _renew_producer(self) -> Producer:
        """A new transactional producer with the same id: init_transactions fences the old one and
        aborts what it left open (delivery/checkpoint.py calls this after a fatal transaction error)."""
        producer = Producer(self._producer_config)
        producer.init_transactions(max(30.0, self.settings.delivery_timeout))
        return producer

    def _beat(self) -> None:
        """Waiting on Kafka (delivery/checkpoint.py), not stuck: the loop is alive."""
        self._alive_at = time.monotonic()

    def ready(self) -> tuple[bool, str]:
        refused = self._access.blocked()
        if refused:
            return False, refused
        writable, kafka = self.health.state()
        if not writable:
            return False, kafka
        if self._running and self.assigned.is_set():
            return True, f"in group, {len(self._assignment)} partition(s)" + (f"; {kafka}" if kafka else "")
        return False, "not in the group yet"

    # ------------------------------------------------------------------ callbacks (run inside poll/consume)

    def _on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:  # delivery.report.only.error: called for failures only
            self._access.check(err, "produce")
            self.checkpoint.delivery_failed(err)
            self.metrics.errors.labels("delivery").inc()

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

    def _split(self, tps: Sequence[TP]) -> tuple[list[PartitionRef], list[PartitionRef]]:
        """(user-stage partitions, network-stage partitions) of a set of topic-partitions."""
        user = [PartitionRef(t, p) for t, p in tps if t == self.input_topic]
        net = [PartitionRef(t, p) for t, p in tps if t == self.repartition_topic]
        return user, net

    def _guarded(self, what: str, call: Any, *args: Any, **kwargs: Any) -> None:
        """Call a detector hook; a detector bug is logged and counted, never stops the consumer."""
        try:
            call(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001
            self.metrics.errors.labels("processing").inc()
            self._log.error(f"detectors.{what}_failed", error=repr(exc)[:300])

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assign").inc()
        tps = [(p.topic, p.partition) for p in partitions]
        self._assignment.update(tps)
        self.metrics.assigned_partitions.set(len(self._assignment))
        user, net = self._split(tps)
        if user:
            self._starts_of(user)
            self._guarded("on_assign", self.detectors.on_assign, user)
        if net and self.network is not None:
            self._guarded("on_assign", self.network.on_assign, net)
        if self._throttled:  # the new partitions start paused like the others
            with suppress(KafkaException):
                self._consumer.pause(partitions)
        self.assigned.set()
        self._log.info(
            "partitions.assigned",
            partitions=sorted(ref.partition for ref in user),
            network_partitions=sorted(ref.partition for ref in net),
        )

    def _starts_of(self, refs: list[PartitionRef]) -> None:
        """Where newly assigned input partitions start (their committed offsets): a partition with nothing
        left to read has no consumer position until a message arrives, yet it is at its end."""
        try:
            found = self._consumer.committed([TopicPartition(r.topic, r.partition) for r in refs], timeout=10)
        except KafkaException as exc:
            self._warn("committed.failed", error=str(exc))
            return
        for tp in found:
            self._starts[(tp.topic, tp.partition)] = tp.offset

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        self._complete_held()
        self._commit(sync=True)  # everything processed so far, before the partitions move
        self._forget(gone, lost=False)
        self._log.info("partitions.revoked", partitions=sorted(f"{t}/{p}" for t, p in gone))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        self.checkpoint.forget(gone)
        if self.exactly_once and self.checkpoint.in_transaction:
            self.checkpoint.abort()  # the open transaction may hold other partitions' records: redo them
            self._rewind(None)
        self._forget(gone, lost=True)
        self._log.warning("partitions.lost", partitions=sorted(f"{t}/{p}" for t, p in gone))

    def _forget(self, gone: set[TP], *, lost: bool) -> None:
        user, net = self._split(sorted(gone))
        if user:
            self._guarded("on_revoke", self.detectors.on_revoke, user, lost=lost)
        if net and self.network is not None:
            self._guarded("on_revoke", self.network.on_revoke, net, lost=lost)
        if self.network_stage is not None:
            self.network_stage.drop([ref.partition for ref in net])
            self.user_stage.forget([ref.partition for ref in user])
        if self._aligner is not None:
            self._aligner.drop(gone)
        self._paused -= gone
        self._assignment -= gone
        for tp in gone:
            self._starts.pop(tp, None)
        self.checkpoint.forget(gone)
        for tp in gone:
            self._committed_repartition.pop(tp, None)
        self.metrics.assigned_partitions.set(len(self._assignment))
        self.metrics.lag.set({tp: lag for tp, lag in self.metrics.lag.snapshot().items() if tp not in gone})

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        settings = self.settings
        self._running = True
        self._alive_at = time.monotonic()
        topics = [settings.input_topic]
        if self.repartition_topic is not None and self.network_stage is not None:
            try:
                sources, partitions = ensure_repartition_topic(settings)
            except InternalTopicError as exc:
                if exc.error is None or not self._access.check(exc.error, "metadata"):
                    raise
                self._report_refusal(stop, exc.error, "metadata")  # no crash loop: say why until stopped
                with suppress(KafkaException, RuntimeError):
                    self._consumer.close()
                self._running = False
                return
            self.user_stage.partitions = partitions
            self.network_stage.sources = sources
            self._admin = admin_client(settings)
            topics.append(self.repartition_topic)
        self._consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.health.start()
        if self.exactly_once and not self._init_transactions(stop):
            self._running = False
            with suppress(KafkaException, RuntimeError):  # the producer is dead (fatal): only leave
                self._consumer.close()
            return
        self._log.info(
            "consumer.running",
            topics=topics,
            batch_size=settings.batch_size,
            commit_interval_ms=settings.commit_interval_ms,
        )
        try:
            while not stop.is_set():
                messages = self._take()
                self._alive_at = time.monotonic()
                self._handle(messages)
                self._producer.poll(0)  # delivery failures, transaction events
                self._backpressure()
                if self.checkpoint.is_due():
                    self._commit()
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
            self._report_refusal(stop, exc.args[0], "init_transactions")  # the producer is unusable
            return False
        return True

    def _report_refusal(self, stop: threading.Event, err: KafkaError, where: str) -> None:
        """Stay alive and say why nothing is done, until stopped (no restart loop)."""
        while not stop.wait(LOG_ACCESS_SECONDS):
            self._alive_at = time.monotonic()
            self._access.check(err, where)

    def _take(self) -> list[Message]:
        """What the client has already fetched (up to BATCH_SIZE); waits only when there is nothing."""
        consumer = self._consumer
        size = self.settings.batch_size
        messages = consumer.consume(size, 0)
        if messages or (self._aligner is not None and self._aligner.ready):
            return messages
        wait = min(self.settings.poll_timeout, self.checkpoint.wait_left())
        if self._aligner is not None and self._aligner.buffered:
            wait = min(wait, 0.05)  # held messages may be released by the aligner's timeout
        first = consumer.poll(wait) if wait > 0 else None
        if first is None:
            return []
        return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]

    def _handle(self, messages: list[Message]) -> None:
        inputs: list[Message] = []
        repartitioned: list[Message] = []
        input_topic = self.input_topic
        for msg in messages:
            err = msg.error()
            if err is None:
                (inputs if msg.topic() == input_topic else repartitioned).append(msg)
            elif err.code() != KafkaError._PARTITION_EOF and not self._access.check(err, "consume"):
                self.metrics.errors.labels("kafka").inc()
                self._warn("consume.error", error=err.str(), code=err.name())
        aligner = self._aligner
        if aligner is not None and (aligner.buffered or len(self._user_assignment()) > 1):
            inputs = self._align(inputs, busy=len(messages) >= self.settings.batch_size)
        if inputs:
            self._run_user_stage(inputs)
        if self.network_stage is not None:
            self._write_progress(inputs)
            if repartitioned or self.network_stage.holding:
                self._run_network_stage(repartitioned)

    def _user_assignment(self) -> list[TP]:
        return [tp for tp in self._assignment if tp[0] == self.input_topic]

    def _run_user_stage(self, messages: list[Message]) -> None:
        result = self.user_stage.process(messages)
        batch = result.batch
        changes = self._changes(self._changelog) if self._changelog is not None else ()
        self._send(result.records, batch.dead, changes)
        for tp, (first, following) in _spans(messages).items():
            self.checkpoint.processed(tp, first, following)
        metrics = self.metrics
        metrics.record_batch(batch.stats, result.completed)
        metrics.stage_events.labels("user").inc(len(messages))
        if result.latencies:
            metrics.latency.observe_counts(result.latencies)

    def _write_progress(self, inputs: list[Message]) -> None:
        """Progress records for the network stage's merge (stages/merge.py): for the input partitions of
        this batch (at most every 20 ms each), and for every owned one each PROGRESS_SECONDS."""
        now = time.monotonic()
        due: set[int] = set()
        if now - self._progress_all_at >= PROGRESS_SECONDS:
            self._progress_all_at = now
            due = {p for t, p in self._assignment if t == self.input_topic}
        for msg in inputs:
            p = msg.partition() or 0
            if now - self._progress_at.get(p, 0.0) >= 0.02:
                due.add(p)
        if not due:
            return
        records: list[Record] = []
        aligner = self._aligner
        for p in sorted(due):
            self._progress_at[p] = now
            tp = (self.input_topic, p)
            idle = (aligner is None or not aligner.holding(tp)) and self._at_end(tp)
            records.extend(self.user_stage.progress(p, idle=idle))
        self._send(records, (), ())

    def _complete_held(self) -> None:
        """At-least-once, before a hand-over or a stop: complete what the network stage's merges hold,
        in event-time order, so the commit covers every record read (the next owner would otherwise
        read the held records' successors again and write their outputs twice). Exactly-once needs no
        such step: what was completed is recognised and skipped when read again."""
        if self.network_stage is not None and self.network_stage.holding and not self.exactly_once:
            self._run_network_stage([], flush=True)

    def _run_network_stage(self, messages: list[Message], *, flush: bool = False) -> None:
        stage = self.network_stage
        assert stage is not None  # noqa: S101 - repartitioned messages exist only with the network stage
        try:
            result = stage.process(messages, flush=flush)
        except Exception as exc:  # noqa: BLE001 - keep the events flowing: dead-letter the batch
            self.metrics.errors.labels("processing").inc()
            self._log.error("network_stage.failed", error=repr(exc)[:300])
            why = Invalid("processing_error", f"network stage: {type(exc).__name__}: {str(exc)[:200]}")
            self._send([], [(msg, why) for msg in messages], ())
        else:
            changes = self._changes(stage.detector)
            self._send(result.records, result.dead, changes)
            self.metrics.record_batch(result.stats, len(result.records))
            if result.latencies:
                self.metrics.latency.observe_counts(result.latencies)
        for tp, (first, following) in _spans(messages).items():
            self.checkpoint.processed(tp, first, following)
        if messages:
            self.metrics.stage_events.labels("network").inc(len(messages))

    def _changes(
        self, source: StateChangelog | NetworkDetector
    ) -> Sequence[tuple[str, int, bytes, bytes | None]]:
        try:
            return source.changes()
        except Exception as exc:  # noqa: BLE001 - a detector bug must not stop the consumer
            self.metrics.errors.labels("processing").inc()
            self._log.error("detectors.changes_failed", error=repr(exc)[:300])
            return ()

    def _send(
        self,
        records: Sequence[Record],
        dead: Sequence[tuple[Message, Invalid]],
        changes: Sequence[tuple[str, int, bytes, bytes | None]],
    ) -> None:
        """Hand a batch's records to the producer (no waiting: acknowledgements are checked per interval)."""
        if not (records or dead or changes):
            return
        self.checkpoint.begin()
        produce = self._producer.produce
        for topic, partition, key, value, headers in records:
            try:
                produce(topic, value, key, partition, headers=headers)
            except BufferError:
                self._produce_waiting(topic, value, key, partition, headers)
        if dead:
            now_ms = int(time.time() * 1000)
            dlq = self.settings.dlq_topic
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
        while True:
            try:
                self._producer.produce(topic, value, key, partition, headers=headers)
                return
            except BufferError:  # local queue full: let deliveries drain
                self._producer.poll(0.05)

    def _align(self, messages: list[Message], *, busy: bool) -> list[Message]:
        """Hold input messages back until they can go in event-time order across partitions (align.py)."""
        aligner = self._aligner
        assert aligner is not None  # noqa: S101 - called only with an aligner
        aligner.add(messages)
        before = (aligner.forced, aligner.timeouts)
        assignment = sorted(self._user_assignment())
        released = aligner.release(assignment, self._at_end, busy=busy, limit=self.settings.batch_size)
        if (aligner.forced, aligner.timeouts) != before:
            self._warn("alignment.out_of_order", **aligner.snapshot())
        crowded = set(aligner.crowded(assignment))
        share = aligner.max_buffered // max(1, len(assignment))
        calm = {tp for tp in self._paused if aligner.holding(tp) <= share // 2}
        try:
            if crowded - self._paused:
                self._consumer.pause([TopicPartition(t, n) for t, n in crowded - self._paused])
                self._paused |= crowded
            if calm:
                if not self._throttled:
                    self._consumer.resume([TopicPartition(t, n) for t, n in calm])
                self._paused -= calm
        except KafkaException as exc:
            self._warn("pause.failed", error=str(exc))
        return released

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
        if position < 0:  # nothing consumed since the assignment: it starts at its committed offset
            position = self._starts.get(tp, -1)
        return position >= high if position >= 0 else high == low

    def _backpressure(self) -> None:
        """Pause every partition while MAX_IN_FLIGHT records await acknowledgement; resume at half."""
        in_flight = len(self._producer)
        limit = self.settings.max_in_flight
        try:
            if not self._throttled and in_flight >= limit:
                self._consumer.pause([TopicPartition(t, p) for t, p in self._assignment])
                self._throttled = True
                self._warn("backpressure.paused", in_flight=in_flight, max_in_flight=limit)
            elif self._throttled and in_flight < limit // 2:
                self._consumer.resume([TopicPartition(t, p) for t, p in self._assignment - self._paused])
                self._throttled = False
        except KafkaException as exc:
            self._warn("pause.failed", error=str(exc))
        if self._throttled:
            self._producer.poll(0.01)

    # ------------------------------------------------------------------ commit and rewind

    def _commit(self, *, sync: bool = False, deadline: float | None = None) -> bool:
        """One checkpoint (delivery/checkpoint.py); on failure, rewind to the last one."""
        stage = self.network_stage
        if stage is not None:  # a partition is done only up to the first event its merge still holds
            for tp in list(self.checkpoint.position):
                if tp[0] == self.repartition_topic:
                    held = stage.first_held(tp[1])
                    if held is not None:
                        self.checkpoint.cap(tp, held)
        positions = dict(self.checkpoint.position)
        try:
            committed = self.checkpoint.commit(sync=sync, deadline=deadline)
        except CommitFailed as exc:
            self.metrics.errors.labels("delivery").inc()
            self._warn("checkpoint.failed", error=str(exc))
            self._rewind(None)
            return False
        if committed:
            self.metrics.commits.inc()
            if self.repartition_topic is not None:
                for tp, offset in positions.items():
                    if tp[0] == self.repartition_topic:
                        self._committed_repartition[tp] = offset
                self._purge()
        return True

    def _purge(self) -> None:
        if self._admin is None or time.monotonic() - self._purged_at < PURGE_SECONDS:
            return
        self._purged_at = time.monotonic()
        purge(self._admin, {tp: o for tp, o in self._committed_repartition.items() if tp in self._assignment})

    def _rewind(self, stop: threading.Event | None) -> None:
        """Go back to the last checkpoint: restore the state of the partitions processed since, seek there."""
        points = self.checkpoint.rewind_points()
        assigned = {tp: o for tp, o in points.items() if tp in self._assignment}
        stage = self.network_stage
        if stage is not None:  # held events of a rewound partition are read again too
            for tp, point in list(assigned.items()):
                held = stage.first_held(tp[1]) if tp[0] == self.repartition_topic else None
                if held is not None:
                    assigned[tp] = min(point, held)
        user, net = self._split(sorted(assigned))
        if user and self._changelog is not None:
            self._guarded("rewind", self._changelog.rewind, user)
        if net and self.network is not None:
            self._guarded("rewind", self.network.rewind, net)
        if self.network_stage is not None:
            self.network_stage.drop([ref.partition for ref in net])
        if self._aligner is not None:  # what it holds of these partitions comes again after the seek
            self._aligner.drop(assigned)
        for (topic, partition), offset in assigned.items():
            try:
                self._consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:
                self._warn("seek.failed", error=str(exc))
        if stop is not None:
            stop.wait(RETRY_BACKOFF_SECONDS)

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
            sizes = dict(self.detectors.state_sizes())
            if self.network is not None:
                sizes.update(self.network.state_sizes())
            self.metrics.set_state_sizes(sizes)

    def _close(self, stop: threading.Event) -> None:
        self._running = False
        self.health.stop()
        self.assigned.clear()
        deadline = time.monotonic() + self.settings.shutdown_timeout * 0.6 if stop.is_set() else None
        try:
            self._complete_held()
            self._commit(sync=True, deadline=deadline)
            self._consumer.close()  # leaves the group (revocation commits again: nothing left)
        except (KafkaException, RuntimeError) as exc:
            self._log.warning("consumer.close_failed", error=str(exc))
        self.checkpoint.abort()
        left = self._producer.flush(2.0 if stop.is_set() else 10.0)
        if left:
            self._log.warning("producer.unflushed", messages=left)
        self._log.info("consumer.closed")
