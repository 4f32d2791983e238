"""Groups of the consumer's metrics that change for one reason each (``ConsumerMetrics`` holds them).

``KafkaHealthMetrics``: the cluster as the consumer sees it (``delivery/cluster.py`` sets them);
``LoginMetrics``: who logged in where, when and with what. Each registers its own families on the injected
registry and pre-creates the label values that alerts' ``rate()`` needs from 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

if TYPE_CHECKING:
    from login_consumer.process import BatchStats

PARTITION_PROBLEMS: Final = ("offline", "under_replicated", "under_min_isr")  # delivery/cluster.py
MAX_APP_VERSION_LABELS: Final = 50


@dataclass(frozen=True)
class KafkaHealthMetrics:
    """The Kafka cluster's health as the consumer sees it (``login_consumer_kafka_*``, cluster.py)."""

    degraded: Gauge
    brokers: Gauge
    partitions: Gauge
    refusals: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> KafkaHealthMetrics:
        metrics = cls(
            degraded=Gauge(
                "login_consumer_kafka_degraded",
                "Kafka cluster health as the consumer sees it: 0 healthy, 1 degraded (a broker down, "
                "partitions under-replicated; writes go through), 2 writes refused (below "
                "min.insync.replicas, no leader, or refusals just seen).",
                registry=registry,
            ),
            brokers=Gauge(
                "login_consumer_kafka_brokers", "Brokers the cluster's metadata lists.", registry=registry
            ),
            partitions=Gauge(
                "login_consumer_kafka_partitions",
                "Partitions of the consumer's topics (and the offsets and transaction state topics) by "
                "problem: offline, under_replicated, under_min_isr.",
                ["state"],
                registry=registry,
            ),
            refusals=Counter(
                "login_consumer_kafka_refusals",
                "Writes or transactions the cluster refused or timed out (after librdkafka's retries), by "
                "error code.",
                ["code"],
                registry=registry,
            ),
        )
        for state in PARTITION_PROBLEMS:
            metrics.partitions.labels(state)
        for code in ("NOT_ENOUGH_REPLICAS", "NOT_LEADER_FOR_PARTITION", "_MSG_TIMED_OUT"):
            metrics.refusals.labels(code)  # the usual ones exist at 0 (rate() needs a start)
        return metrics


@dataclass(frozen=True)
class LoginMetrics:
    """Who logged in where, when and with what (``login_consumer_logins*``): the audience, not the risk.

    App versions come from the events, so their label values are bounded: the first
    MAX_APP_VERSION_LABELS versions seen, then ``other``."""

    geo: Counter
    by_time: Counter
    by_platform: Counter
    app_version_labels: set[str]

    @classmethod
    def create(cls, registry: CollectorRegistry) -> LoginMetrics:
        return cls(
            geo=Counter(
                "login_consumer_logins",
                "Processed logins by country, continent and US census region ('-' when unknown).",
                ["country", "continent", "region"],
                registry=registry,
            ),
            by_time=Counter(
                "login_consumer_logins_by_time",
                "Processed logins by UTC weekday (0=Monday) and hour.",
                ["weekday", "hour"],
                registry=registry,
            ),
            by_platform=Counter(
                "login_consumer_logins_by_platform",
                "Processed logins by platform and app version (major.minor).",
                ["platform", "app_version"],
                registry=registry,
            ),
            app_version_labels=set(),
        )

    def app_label(self, version: str) -> str:
        seen = self.app_version_labels
        if version in seen:
            return version
        if len(seen) < MAX_APP_VERSION_LABELS:
            seen.add(version)
            return version
        return "other"

    def record(self, stats: BatchStats, inc: Callable[[Counter, tuple[str, ...], float], None]) -> None:
        for geo, count in stats.geo.items():
            inc(self.geo, geo, count)
        for (weekday, hour), count in stats.times.items():
            inc(self.by_time, (str(weekday), str(hour)), count)
        for (platform, version), count in stats.platforms.items():
            inc(self.by_platform, (platform, self.app_label(version)), count)
