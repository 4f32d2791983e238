"""What the consumer knows of the Kafka cluster's health: for ``/ready`` and the ``login_consumer_kafka_*``
metrics (docs/metrics.md).

Two sources:
  * the metadata of the topics the consumer depends on (its input, output, dead-letter and internal
    topics, ``__consumer_offsets`` and ``__transaction_state``), read every ``CHECK_SECONDS`` on a thread
    of its own: partitions without a leader (offline), with fewer in-sync replicas than replicas
    (under-replicated) and with fewer than the topic's ``min.insync.replicas`` (under min ISR: acks=all
    writes are refused), and the brokers the metadata lists against the cluster's size;
  * the errors the delivery path reports (``saw``): the broker refusing or timing out a write or a
    transaction (NOT_ENOUGH_REPLICAS, NOT_LEADER_FOR_PARTITION, ...). librdkafka retries those itself; the
    ones that reach the consumer are counted by code and make the state "refusing" for ``REFUSAL_SECONDS``.

``state()``: (True, "") when healthy; (True, what) when degraded but writes go through (a broker down,
partitions under-replicated: /ready stays 200 and says so); (False, what) when writes are refused (a
partition offline or under min ISR, or refusals just seen: /ready answers 503, the consumer keeps running
and retrying; nothing is dead-lettered or lost).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

import structlog
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics

log = structlog.get_logger("login_consumer")

CHECK_SECONDS: Final = 5.0
REFUSAL_SECONDS: Final = 30.0
INTERNAL_TOPICS: Final = ("__consumer_offsets", "__transaction_state")
# Errors of a write or a transaction that mean the cluster (not the consumer) cannot take it now.
REFUSALS: Final = frozenset(
    {
        KafkaError.NOT_ENOUGH_REPLICAS,
        KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._ALL_BROKERS_DOWN,
    }
)


def watched_topics(settings: ConsumerSettings) -> list[str]:
    """The topics whose health decides whether the consumer can make progress."""
    topics = [settings.input_topic, settings.output_topic, settings.dlq_topic]
    if settings.network_stage:
        topics.append(settings.repartition_topic())
        if settings.state_changelog:
            topics.append(settings.network_state_topic())
    if settings.state_changelog:
        topics.append(settings.changelog_topic())
    return [*topics, *INTERNAL_TOPICS]


@dataclass(frozen=True)
class Snapshot:
    brokers: int = 0  # in the metadata
    cluster_size: int = 0  # the most replicas any watched partition has (a broker down still counts)
    offline: int = 0
    under_replicated: int = 0
    under_min_isr: int = 0
    checked: bool = False

    def problems(self) -> list[str]:
        out: list[str] = []
        if self.brokers < self.cluster_size:
            out.append(f"{self.brokers} of {self.cluster_size} brokers up")
        if self.offline:
            out.append(f"{self.offline} partition(s) without a leader")
        if self.under_min_isr:
            out.append(f"{self.under_min_isr} partition(s) below min.insync.replicas")
        if self.under_replicated:
            out.append(f"{self.under_replicated} partition(s) under-replicated")
        return out


class ClusterHealth:
    def __init__(
        self,
        settings: ConsumerSettings,
        metrics: ConsumerMetrics,
        *,
        topics: Iterable[str] | None = None,
        admin: Callable[[], AdminClient] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.topics = list(topics) if topics is not None else watched_topics(settings)
        self._admin_factory = admin or (lambda: AdminClient({**settings.kafka_common(), "log_level": 0}))
        self._admin: AdminClient | None = None
        self._clock = clock
        self._min_isr: dict[str, int] = {}
        self._snapshot = Snapshot()
        self._refused_at = -1e9
        self._refused_code = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._was: tuple[bool, str] = (True, "")

    # ------------------------------------------------------------------ the delivery path's errors

    def saw(self, err: KafkaError | None) -> bool:
        """A write or transaction failed with ``err``: count it when the cluster refused it; True if so."""
        if err is None or err.code() not in REFUSALS:
            return False
        self.metrics.kafka.refusals.labels(err.name()).inc()
        with self._lock:
            self._refused_at = self._clock()
            self._refused_code = err.name()
        self._publish()
        return True

    # ------------------------------------------------------------------ metadata

    def check(self) -> Snapshot:
        """Read the watched topics' metadata once (a broker answering is enough) and publish it."""
        try:
            if self._admin is None:
                self._admin = self._admin_factory()
            md = self._admin.list_topics(timeout=CHECK_SECONDS)
        except KafkaException as exc:
            log.warning("kafka.health_check_failed", error=str(exc)[:300])
            return self._snapshot
        self._read_min_isr([t for t in self.topics if t in md.topics and t not in self._min_isr])
        live = set(md.brokers)
        size = len(live)
        offline = under_replicated = under_min_isr = 0
        for name in self.topics:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                continue
            min_isr = self._min_isr.get(name, 1)
            for part in topic.partitions.values():
                size = max(size, len(part.replicas))
                in_sync = [r for r in part.isrs if r in live]
                if part.leader < 0 or part.leader not in live:
                    offline += 1
                elif len(in_sync) < min_isr:
                    under_min_isr += 1
                if len(in_sync) < len(part.replicas):
                    under_replicated += 1
        snapshot = Snapshot(len(live), size, offline, under_replicated, under_min_isr, checked=True)
        with self._lock:
            self._snapshot = snapshot
        self._publish()
        return snapshot

    def _read_min_isr(self, topics: list[str]) -> None:
        """min.insync.replicas of ``topics`` (read once each; 1 if the broker does not say)."""
        if not topics or self._admin is None:
            return
        try:
            futures = self._admin.describe_configs([ConfigResource("topic", t) for t in topics])
        except KafkaException:
            return
        for resource, future in futures.items():
            try:
                entry = future.result(timeout=CHECK_SECONDS).get("min.insync.replicas")
            except Exception as exc:  # noqa: BLE001 - not allowed to describe it, or no answer: next time
                log.debug("kafka.min_isr_unknown", topic=resource.name, error=str(exc)[:200])
                continue
            value = getattr(entry, "value", None)
            if value is not None and str(value).isdigit():
                self._min_isr[resource.name] = int(value)

    # ------------------------------------------------------------------ state

    def state(self) -> tuple[bool, str]:
        """(writes possible, what is wrong): see the module docstring."""
        with self._lock:
            snapshot = self._snapshot
            refused = self._clock() - self._refused_at <= REFUSAL_SECONDS
            code = self._refused_code
        problems = snapshot.problems()
        if refused:
            problems.append(f"writes refused or timed out ({code})")
        if not problems:
            return True, ""
        writable = not (refused or snapshot.offline or snapshot.under_min_isr)
        what = "; ".join(problems)
        return writable, f"Kafka degraded: {what}" if writable else f"Kafka refuses writes: {what}"

    def _publish(self) -> None:
        with self._lock:
            snapshot = self._snapshot
        writable, what = self.state()
        metrics = self.metrics
        metrics.kafka.degraded.set(0 if not what else 1 if writable else 2)
        metrics.kafka.brokers.set(snapshot.brokers)
        metrics.kafka.partitions.labels("offline").set(snapshot.offline)
        metrics.kafka.partitions.labels("under_replicated").set(snapshot.under_replicated)
        metrics.kafka.partitions.labels("under_min_isr").set(snapshot.under_min_isr)
        if (writable, what) != self._was:
            self._was = (writable, what)
            if what:
                log.warning("kafka.degraded", writable=writable, detail=what)
            else:
                log.info("kafka.healthy")

    # ------------------------------------------------------------------ the thread

    def start(self) -> ClusterHealth:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="kafka-health", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1.0)  # a check in progress ends by itself (daemon thread)
            self._thread = None

    def _run(self) -> None:
        while True:
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a health check must never stop the consumer
                log.warning("kafka.health_check_failed", error=repr(exc)[:300])
            if self._stop.wait(CHECK_SECONDS):
                return
