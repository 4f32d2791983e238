"""The consumer process, as a conductor: one Kafka consumer and one producer running every stage.

Topology (docs/consumer.md, docs/architecture.md):

    user-login ──▶ user stage ──▶ <GROUP_ID>-network-repartition ──▶ network stage ──▶ processed-logins
    (by user)      validate, enrich,        (by network)                credential_stuffing
                   per-user detectors, score
                   └──▶ dead letters                                    └──▶ dead letters

The consumer subscribes to the input topic and the repartition topic in one group (``GROUP_ID``): N copies
of the process share the partitions of both, as Kafka Streams instances do. Each concern has one owner, and
``ConsumerApp`` only calls them in order:

* the intake (``intake/group.py``): reading, event-time alignment, pausing and back-pressure;
* the topology (``topology.py``): one read through the user stage and the network stage;
* the producer side (``delivery/sender.py``): outputs, repartition records, dead letters, changelog records;
* the checkpoint (``delivery/checkpoint.py``): commits every ``COMMIT_INTERVAL_MS`` (at-least-once: the
  acknowledged offsets; exactly-once: one transaction), commit limits, rewind points, the repartition purge;
* the state manager (``stores/manager.py``): restore on assignment, forget on revocation, rewind;
* the internal topics (``topics.py``) and the access policy (``operations/access.py``);
* the probes (``operations/probes.py``): what ``/healthz`` and ``/ready`` answer, the cluster's health
  (``delivery/cluster.py``) included.

Refused, not crashed (docs/security.md): at start-up the input topic must exist, the internal topics must
exist or be created, and (exactly-once) the transactional id must be granted; each step is retried with
backoff until it succeeds (``operations/retry.py``), not ready with the reason meanwhile. At run time a
refused or failed produce, commit or transaction fails the checkpoint: the interval is aborted or not
committed, rewound, and retried after a backoff while the refusal lasts; a producer with a fatal error is
replaced; partitions whose state the broker would not serve are held until a retried restore succeeds.
Nothing is committed past what was delivered, and the right granted later is picked up without a restart.

Stop (SIGTERM/SIGINT sets ``stop``): the batch in hand is finished, progress committed, the group left.
"""

from __future__ import annotations

import threading
import time
from contextlib import suppress
from typing import Any, Final

import structlog
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition

from login_common.access import Backoff
from login_consumer.config import ConsumerSettings
from login_consumer.delivery.checkpoint import Checkpoint
from login_consumer.detectors.base import Detectors
from login_consumer.detectors.networks import NetworkDetector
from login_consumer.errors import CommitFailed
from login_consumer.metrics import ConsumerMetrics
from login_consumer.operations.access import AccessFailures
from login_consumer.operations.events import Events
from login_consumer.process import Processor
from login_consumer.records import TP
from login_consumer.topology import NETWORK, USER
from login_consumer.wiring import assemble, prepare

log = structlog.get_logger("login_consumer")

REFRESH_SECONDS: Final = 1.0  # lag and detector state sizes


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
        self.settings, self.metrics, self.exactly_once = settings, metrics, settings.exactly_once
        self._log = log.bind(
            group=settings.group_id, topic=settings.input_topic, guarantee=settings.processing_guarantee
        )
        self._access = AccessFailures(metrics, self._log, settings.sasl_username)
        self.events = Events(metrics, self._log, self._access)
        parts = assemble(settings, self.events, detectors=detectors, processor=processor, network=network)
        self.topics, self.detectors, self.processor, self.network = (
            parts.topics, parts.detectors, parts.processor, parts.network,
        )  # fmt: skip
        self.user_stage, self.network_stage = parts.user_stage, parts.network_stage
        self.repartition_topic = self.user_stage.repartition_topic
        self._consumer, self.group, self.state = parts.consumer, parts.group, parts.state
        self.checkpoint, self.sender, self.topology = parts.checkpoint, parts.sender, parts.topology
        self.parts, self.producers, self.health = parts, parts.producers, parts.health
        self.probes, self.retrier = parts.probes, parts.retrier  # /healthz and /ready; start-up retries
        self.alive, self.ready, self.assigned = self.probes.alive, self.probes.ready, self.probes.assigned
        self._backoff, self._restore_backoff = Backoff(), Backoff()
        self._resubscribe_backoff, self._topics = Backoff(), list[str]()
        self._stop = threading.Event()
        self._refreshed_at = 0.0

    # ------------------------------------------------------------------ rebalances

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("assign").inc()
        self.group.assign(partitions)
        self.metrics.assigned_partitions.set(len(self.group.assignment))
        stages = self.state.assign((p.topic, p.partition) for p in partitions)
        if self.state.pending:  # read nothing of them until their restore succeeds (retried in _turn)
            self.group.hold(set(self.state.pending))
        self.assigned.set()
        self._log.info(
            "partitions.assigned",
            partitions=sorted(stages.get(USER, [])),
            network_partitions=sorted(stages.get(NETWORK, [])),
        )

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("revoke").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        self.topology.hand_over(gone, exactly_once=self.exactly_once)  # what is held; the idle claims
        self._commit(sync=True)  # everything processed so far, before the partitions move
        self._forget(gone, lost=False)
        self._log.info("partitions.revoked", partitions=sorted(f"{t}/{p}" for t, p in gone))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.metrics.rebalances.labels("lost").inc()
        gone = {(p.topic, p.partition) for p in partitions}
        self.checkpoint.forget(gone)
        if self.exactly_once and self.checkpoint.transactions.open:
            self.checkpoint.abort()  # the open transaction may hold other partitions' records: redo them
            self._rewind()
        self._forget(gone, lost=True)
        self._log.warning("partitions.lost", partitions=sorted(f"{t}/{p}" for t, p in gone))

    def _forget(self, gone: set[TP], *, lost: bool) -> None:
        self.topology.forget(self.state.revoke(gone, lost=lost))
        self.group.forget(gone)
        self.checkpoint.forget(gone)
        self.metrics.assigned_partitions.set(len(self.group.assignment))
        self.metrics.lag.set({tp: lag for tp, lag in self.metrics.lag.snapshot().items() if tp not in gone})

    # ------------------------------------------------------------------ the loop

    def run(self, stop: threading.Event) -> None:
        settings = self.settings
        self.probes.running, self._stop = True, stop
        self.probes.beat()
        topics = [settings.input_topic]
        if self.repartition_topic is not None and self.network_stage is not None:
            topics.append(self.repartition_topic)
        ready = False
        try:
            ready = self.retrier.until_done(stop, "start-up", lambda: prepare(settings, self.parts))
            if ready:
                self._topics = topics
                self._subscribe()
                self.health.start()
            if ready and self.exactly_once:
                ready = self.retrier.until_done(stop, "init_transactions", self.producers.init_transactions)
        finally:
            if not ready:  # stopped while waiting, or a setting that can never work
                self.probes.running = False
                with suppress(KafkaException, RuntimeError):
                    self._consumer.close()
        if not ready:
            return
        self._log.info(
            "consumer.running",
            topics=topics,
            batch_size=settings.batch_size,
            commit_interval_ms=settings.commit_interval_ms,
        )
        try:
            while not stop.is_set():
                self._turn()
        finally:
            self._close(stop)

    def _subscribe(self) -> None:
        self._consumer.subscribe(
            self._topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def _resubscribe(self) -> None:
        """Join again when refused partitions are stuck (``PartitionGroup.stuck``): offsets looked up anew."""
        stuck = self.group.stuck()
        self._resubscribe_backoff.wait(time.monotonic())
        if not stuck:
            return
        self._log.warning("consumer.rejoining", stuck=sorted(f"{t}/{p}" for t, p in stuck))
        self.group.refused.rejoin()
        self._consumer.unsubscribe()
        self._subscribe()

    def _turn(self) -> None:
        """One turn of the loop: read, process, serve acknowledgements, commit when due."""
        messages = self.group.take(self.checkpoint.wait_left())
        self.probes.beat()
        now = self.probes.alive_at
        inputs, repartitioned = self.group.split(
            messages, self.repartition_topic, self.events.on_consume_error
        )
        self.topology.handle(inputs, repartitioned, busy=len(messages) >= self.settings.batch_size)
        self.sender.serve()  # delivery failures, transaction events
        if self.group.backpressure(len(self.sender), self.settings.max_in_flight):
            self.sender.serve(0.01)
        if self.checkpoint.is_due():
            self._commit()
        self.parts.credentials.check()
        if self.group.refused and self._resubscribe_backoff.ready(now):
            self._resubscribe()
        if self.state.pending and self._restore_backoff.ready(now):
            self.group.release(self.state.retry())
            self._restore_backoff.attempted(time.monotonic(), failed=bool(self.state.pending))
        if now - self._refreshed_at >= REFRESH_SECONDS:
            self._refreshed_at = now
            self.topology.refresh_metrics()

    # ------------------------------------------------------------------ commit and rewind

    def _commit(self, *, sync: bool = False, deadline: float | None = None) -> bool:
        """One checkpoint (delivery/checkpoint.py); on failure, rewind to the last one."""
        try:
            committed = self.checkpoint.commit(sync=sync, deadline=deadline)
        except CommitFailed as exc:
            self.metrics.errors.labels("delivery").inc()
            self.events.warn("checkpoint.failed", error=str(exc))
            self._rewind()
            self._recover()
            return False
        if committed:
            self.metrics.commits.inc()
            self._access.clear()
            self._backoff.reset()
        return True

    def _recover(self) -> None:
        """After a failed checkpoint: replace a broken producer; while a refusal lasts, wait a backoff
        before reading again (the rewound events are processed again after it)."""
        stop = self._stop
        self.producers.recover(stop, self.retrier.until_done)
        if self._access.blocked() and not stop.is_set():
            self.retrier.pause(stop, self._backoff.next(), self.sender.serve)

    def _rewind(self) -> None:
        """Go back to the last checkpoint: restore the state of the partitions processed since, seek there."""
        points = self.checkpoint.rewind(self.group.assignment)
        self.topology.forget(self.state.rewind(points), rewound=True)
        self.group.rewind(points)

    def _close(self, stop: threading.Event) -> None:
        self.probes.running = False
        self.health.stop()
        self.assigned.clear()
        deadline = time.monotonic() + self.settings.shutdown_timeout * 0.6 if stop.is_set() else None
        try:
            self.topology.complete_held(exactly_once=self.exactly_once)
            self._commit(sync=True, deadline=deadline)
            self._consumer.close()  # leaves the group (revocation commits again: nothing left)
        except (KafkaException, RuntimeError) as exc:
            self._log.warning("consumer.close_failed", error=str(exc))
        _close_producer(self.checkpoint, self.sender.producer, 2.0 if stop.is_set() else 10.0, self._log)
        self._log.info("consumer.closed")


def _close_producer(checkpoint: Checkpoint, producer: Producer, seconds: float, log: Any) -> None:
    """Abort what is open and flush the rest. A fenced (fatal) producer raises there: its open transaction
    is the broker's to abort and what it held is redone by the partitions' next owner, so a clear line,
    not a traceback."""
    try:
        checkpoint.abort()
        left = producer.flush(seconds)
    except KafkaException as exc:
        log.warning("producer.close_failed", error=str(exc.args[0]))
        return
    if left:
        log.warning("producer.unflushed", messages=left)
