"""Consumer metrics (docs/metrics.md is the catalogue), registered on an injected registry.

The hot path never touches a metric per event: ``Processor`` aggregates a batch into ``BatchStats`` and
``ConsumerMetrics.record_batch`` applies it with one update per distinct label set. Histograms that get
many observations per batch are ``BatchHistogram``s (bucket counts added in bulk). Lag and the top-20
flagged users/IPs are collected at scrape time from snapshots the consumer loop keeps. Groups that change
for one reason each (the cluster's health, the logins' audience) are ``metric_groups.py``'s.

``login_consumer_stuffing_network_accounts`` is what the credential-stuffing alert groups by: one series
per network with a detection within the stuffing window (wall clock), its value the most failing
accounts seen, top 20. A gauge of the current wave rather than a counter, because a network's series is
born mid-attack (a counter's first sample would be lost to ``increase()``) and must end when the wave
does, so the alert resolves.
"""

from __future__ import annotations

import collections
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

from login_consumer import __version__
from login_consumer.collectors import (
    BatchHistogram,
    LagCollector,
    StuffingCollector,
    TopCounter,
    _TopCollector,
)
from login_consumer.detectors.names import DETECTOR_NAMES
from login_consumer.metric_groups import KafkaHealthMetrics, LoginMetrics
from login_consumer.validate import ERROR_TYPES

if TYPE_CHECKING:
    from login_consumer.process import BatchStats

PROCESSING_BUCKETS: Final = (
    0.000001,
    0.0000025,
    0.000005,
    0.00001,
    0.000025,
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.05,
)
LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
RISK_BUCKETS: Final = tuple(range(10, 101, 10))
ERROR_KINDS: Final = (
    "delivery",
    "commit",
    "processing",
    "kafka",
    "authorization",
    "authentication",
    "missing_topic",
)
REBALANCE_EVENTS: Final = ("assign", "revoke", "lost")
STAGES: Final = ("user", "network")  # the topology's stages (stages/)
# Why the event-time ordering released without waiting for every source (intake/align.py, stages/merge.py)
OUT_OF_ORDER_CAUSES: Final = ("silent_source", "too_many_held", "late_arrival")
# Detections count from 0 (ConsumerMetrics.create), so that the first ones count: increase()
# (LoginStreamBruteForceBurst) cannot see what a series already holds in its first sample.


@dataclass(frozen=True)
class ConsumerMetrics:
    consumed: Counter
    processed: Counter
    dlq: Counter
    errors: Counter
    processing: BatchHistogram
    latency: BatchHistogram
    risk_score: BatchHistogram
    risk_level: Counter
    detections: Counter
    logins: LoginMetrics
    rebalances: Counter
    commit_failures: Counter
    commits: Counter
    stage_events: Counter
    out_of_order: Counter
    assigned_partitions: Gauge
    state_entries: Gauge
    info: Gauge
    kafka: KafkaHealthMetrics  # delivery/cluster.py
    lag: LagCollector
    stuffing: StuffingCollector
    flagged_users: TopCounter
    flagged_ips: TopCounter
    children: dict[tuple[str, tuple[str, ...]], Any]  # (metric, label values) -> labelled child

    @classmethod
    def create(
        cls,
        registry: CollectorRegistry,
        guarantee: str = "at-least-once",
        stuffing_window: float = 600.0,
    ) -> ConsumerMetrics:
        """``stuffing_window``: seconds a network stays in login_consumer_stuffing_network_accounts after
        its last credential-stuffing detection (STUFFING_WINDOW_SECONDS)."""
        lag = LagCollector()
        registry.register(lag)
        stuffing = StuffingCollector(stuffing_window)
        registry.register(stuffing)
        flagged_users, flagged_ips = TopCounter(), TopCounter()
        registry.register(
            _TopCollector(
                "login_consumer_flagged_user_events",
                "Flagged events (high risk or detected) of the top-20 flagged users.",
                "user_id",
                flagged_users,
            )
        )
        registry.register(
            _TopCollector(
                "login_consumer_flagged_ip_events",
                "Flagged events (high risk or detected) of the top-20 flagged IPs.",
                "ip",
                flagged_ips,
            )
        )
        metrics = cls(
            consumed=Counter(
                "login_consumer_events_consumed", "Messages read from the input topic.", registry=registry
            ),
            processed=Counter(
                "login_consumer_events_processed", "Events written to the output topic.", registry=registry
            ),
            dlq=Counter(
                "login_consumer_events_dlq",
                "Messages sent to the dead-letter topic, by reason.",
                ["reason"],
                registry=registry,
            ),
            errors=Counter(
                "login_consumer_errors",
                "Errors by type (delivery, commit, processing, kafka, authorization, authentication).",
                ["type"],
                registry=registry,
            ),
            processing=BatchHistogram(
                "login_consumer_processing_seconds",
                "Processing time per event (a batch's time divided by its size, once per event).",
                PROCESSING_BUCKETS,
                registry,
            ),
            latency=BatchHistogram(
                "login_consumer_event_latency_seconds",
                "Input message timestamp to output acknowledged by the broker.",
                LATENCY_BUCKETS,
                registry,
            ),
            risk_score=BatchHistogram(
                "login_consumer_risk_score", "Risk score of processed events (0-100).", RISK_BUCKETS, registry
            ),
            risk_level=Counter(
                "login_consumer_risk_level", "Processed events per risk level.", ["level"], registry=registry
            ),
            detections=Counter(
                "login_consumer_detections",
                "Stateful detections by detector name.",
                ["detector"],
                registry=registry,
            ),
            logins=LoginMetrics.create(registry),
            rebalances=Counter(
                "login_consumer_rebalances", "Rebalance callbacks by event.", ["event"], registry=registry
            ),
            commit_failures=Counter(
                "login_consumer_commit_failures", "Offset commits that failed.", registry=registry
            ),
            commits=Counter(
                "login_consumer_commits",
                "Checkpoints committed (offsets, or a transaction in exactly-once mode).",
                registry=registry,
            ),
            stage_events=Counter(
                "login_consumer_stage_events",
                "Events each stage of the topology took in (user: the input topic; network: the repartition "
                "topic).",
                ["stage"],
                registry=registry,
            ),
            out_of_order=Counter(
                "login_consumer_out_of_order_releases",
                "Releases of the event-time ordering that did not wait for every source, by stage and cause: "
                "silent_source (release rounds that stopped waiting for a source silent past its max wait), "
                "too_many_held (events released early: more held than allowed), late_arrival (network stage: "
                "events that arrived after a later event of their partition was released, their source "
                "taken as idle while they were still on their way). Windows spanning them may detect "
                "differently from one in-order pass.",
                ["stage", "cause"],
                registry=registry,
            ),
            assigned_partitions=Gauge(
                "login_consumer_assigned_partitions", "Partitions currently assigned.", registry=registry
            ),
            state_entries=Gauge(
                "login_consumer_state_entries", "Detector state size per store.", ["store"], registry=registry
            ),
            info=Gauge(
                "login_consumer_info",
                "Consumer version and processing guarantee (always 1).",
                ["version", "guarantee"],
                registry=registry,
            ),
            kafka=KafkaHealthMetrics.create(registry),
            lag=lag,
            stuffing=stuffing,
            flagged_users=flagged_users,
            flagged_ips=flagged_ips,
            children={},
        )
        metrics.info.labels(__version__, guarantee).set(1)
        for reason in ERROR_TYPES:
            metrics.dlq.labels(reason)
        for kind in ERROR_KINDS:
            metrics.errors.labels(kind)
        for level in ("low", "medium", "high"):
            metrics.risk_level.labels(level)
        for event in REBALANCE_EVENTS:
            metrics.rebalances.labels(event)
        for stage in STAGES:
            metrics.stage_events.labels(stage)
            for cause in OUT_OF_ORDER_CAUSES:
                metrics.out_of_order.labels(stage, cause)
        for detector in DETECTOR_NAMES:
            metrics.detections.labels(detector)
        return metrics

    def _inc(self, metric: Counter, labels: tuple[str, ...], count: float) -> None:
        """``metric.labels(*labels).inc(count)``, with the labelled child cached."""
        key = (metric._name, labels)
        child = self.children.get(key)
        if child is None:
            child = self.children[key] = metric.labels(*labels)
        child.inc(count)

    def record_batch(self, stats: BatchStats, processed: int) -> None:
        """Apply a processed batch's aggregates (one update per distinct label set)."""
        inc = self._inc
        if stats.consumed:
            self.consumed.inc(stats.consumed)
        if processed:
            self.processed.inc(processed)
        for reason, count in stats.dlq.items():
            inc(self.dlq, (reason,), count)
        for kind, count in stats.errors.items():
            inc(self.errors, (kind,), count)
        for stage_cause, count in stats.out_of_order.items():
            inc(self.out_of_order, stage_cause, count)
        self.processing.observe_repeated(stats.seconds / max(1, stats.consumed), stats.consumed)
        self.risk_score.observe_counts(collections.Counter(stats.risk_scores))
        for level, count in stats.levels.items():
            inc(self.risk_level, (level,), count)
        for detector, count in stats.detections.items():
            inc(self.detections, (detector,), count)
        self.logins.record(stats, inc)
        self.flagged_users.update(stats.flagged_users)
        self.flagged_ips.update(stats.flagged_ips)
        self.stuffing.record(stats.stuffing)

    def set_state_sizes(self, sizes: Mapping[str, int]) -> None:
        for store, size in sizes.items():
            self.state_entries.labels(store).set(size)
