"""The consumer exposes every metric of docs/metrics.md, with exactly those names, types and labels."""

from __future__ import annotations

import re
import time
from pathlib import Path

import orjson
import pytest
from confluent_kafka import Message
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from login_common.settings import load_settings
from login_consumer.collectors import TOP_N, BatchHistogram, StuffingCollector, TopCounter
from login_consumer.config import ConsumerSettings
from login_consumer.in_process import AllDetectors
from login_consumer.metric_groups import MAX_APP_VERSION_LABELS
from login_consumer.metrics import ConsumerMetrics
from login_consumer.process import BatchStats, Processor

ROOT = Path(__file__).resolve().parents[2]


def _catalogue() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) of the consumer table in docs/metrics.md."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    section = text.split("## Consumer", 1)[1].split("\n## ", 1)[0]
    out: dict[str, tuple[str, set[str]]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[0].startswith("`login_consumer_"):
            continue
        name = cells[0].strip("`")
        labels = set(re.findall(r"`([a-z_]+)`", cells[2]))
        out[name] = (cells[1], labels)
    return out


def _exposed(registry: CollectorRegistry) -> dict[str, tuple[str, set[str]]]:
    out: dict[str, tuple[str, set[str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        name = family.name + ("_total" if family.type == "counter" else "")
        labels: set[str] = set()
        for sample in family.samples:
            labels |= set(sample.labels) - {"le"}
        out[name] = (family.type, labels)
    return out


@pytest.fixture
def loaded() -> tuple[CollectorRegistry, ConsumerMetrics]:
    """Metrics after one processed batch (so labelled series exist)."""
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry, "exactly-once")
    settings = load_settings(ConsumerSettings, metrics_port=0)
    now = time.time()
    events = [
        {"user_id": f"u{n}", "ip": "81.2.69.142", "timestamp": int(now), "locale": "RI", "outcome": "failure"}
        for n in range(3)
    ]
    batch = [Message(topic="t", partition=0, offset=n, value=orjson.dumps(e)) for n, e in enumerate(events)]
    result = Processor.from_settings(settings).process(batch, now)
    result.stats.detections["brute_force"] += 1
    metrics.record_batch(result.stats, len(result.outputs))
    metrics.set_state_sizes({"failures_by_user": 3})
    metrics.lag.set({("user-login", 0): 42})
    metrics.stuffing.record({"198.51.100.0/24": 12})
    metrics.assigned_partitions.set(1)
    metrics.latency.observe_many([0.01, 0.2])
    return registry, metrics


def test_every_catalogued_metric_is_exposed_with_its_type_and_labels(
    loaded: tuple[CollectorRegistry, ConsumerMetrics],
) -> None:
    registry, _ = loaded
    catalogue = _catalogue()
    assert len(catalogue) == 28
    exposed = _exposed(registry)
    for name, (kind, labels) in catalogue.items():
        assert name in exposed, f"{name} is in docs/metrics.md but not exposed"
        assert exposed[name][0] == kind, f"{name}: {exposed[name][0]} != {kind}"
        assert exposed[name][1] == labels, f"{name}: labels {exposed[name][1]} != {labels}"
    ours = {n for n in exposed if n.startswith("login_consumer_") and not n.endswith("_created")}
    extra = ours - set(catalogue)
    assert not extra, f"not in docs/metrics.md: {extra}"


def test_values_after_a_batch(loaded: tuple[CollectorRegistry, ConsumerMetrics]) -> None:
    registry, _ = loaded
    get = registry.get_sample_value
    assert get("login_consumer_events_consumed_total") == 3
    assert get("login_consumer_events_processed_total") == 3
    assert get("login_consumer_risk_score_count") == 3
    assert get("login_consumer_processing_seconds_count") == 3
    assert get("login_consumer_risk_level_total", {"level": "low"}) == 0  # pre-initialised
    assert get("login_consumer_logins_total", {"country": "GB", "continent": "EU", "region": "-"}) == 3
    assert get("login_consumer_detections_total", {"detector": "brute_force"}) == 1
    assert get("login_consumer_lag_messages", {"topic": "user-login", "partition": "0"}) == 42
    assert get("login_consumer_stuffing_network_accounts", {"network": "198.51.100.0/24"}) == 12
    assert get("login_consumer_state_entries", {"store": "failures_by_user"}) == 3
    assert get("login_consumer_info", {"version": "0.1.0", "guarantee": "exactly-once"}) == 1
    assert get("login_consumer_errors_total", {"type": "commit"}) == 0
    assert get("login_consumer_rebalances_total", {"event": "lost"}) == 0
    assert get("login_consumer_events_dlq_total", {"reason": "not_json"}) == 0


def test_batch_histogram_matches_prometheus_histogram() -> None:
    values = [0.0, 0.5, 1.0, 1.5, 10.0, 99.0, 100.0, 250.0]
    buckets = (1.0, 10.0, 100.0)
    ours_registry, theirs_registry = CollectorRegistry(), CollectorRegistry()
    ours = BatchHistogram("h", "doc", buckets, ours_registry)
    theirs = Histogram("h", "doc", buckets=buckets, registry=theirs_registry)
    ours.observe_many(values[:4])
    ours.observe_repeated(values[4], 1)
    ours.observe_many(values[5:])
    for v in values:
        theirs.observe(v)
    for le in ("1.0", "10.0", "100.0", "+Inf"):
        assert ours_registry.get_sample_value("h_bucket", {"le": le}) == theirs_registry.get_sample_value(
            "h_bucket", {"le": le}
        )
    assert ours_registry.get_sample_value("h_count") == 8
    assert ours_registry.get_sample_value("h_sum") == pytest.approx(sum(values))


def test_top_counter_keeps_the_heaviest() -> None:
    top = TopCounter(capacity=30)
    for n in range(200):
        top.update({f"user-{n}": n % 50 + 1})
    best = top.top(TOP_N)
    assert len(best) == TOP_N
    assert best[0][1] == 50
    assert all(count >= 31 for _, count in best)


def test_flagged_collectors_expose_at_most_twenty() -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry)
    stats = BatchStats()
    for n in range(40):
        stats.flagged_users[f"u{n}"] = n + 1
        stats.flagged_ips[f"10.0.0.{n}"] = n + 1
    metrics.record_batch(stats, 0)
    families = {f.name: f for f in text_string_to_metric_families(generate_latest(registry).decode())}
    users = families["login_consumer_flagged_user_events"].samples
    assert len(users) == 20
    assert max(s.value for s in users) == 40
    assert len(families["login_consumer_flagged_ip_events"].samples) == 20


def test_app_version_labels_are_bounded() -> None:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry)
    stats = BatchStats()
    for n in range(MAX_APP_VERSION_LABELS + 10):
        stats.platforms[("android", f"{n}.0")] = 1
    metrics.record_batch(stats, 0)
    assert (
        registry.get_sample_value(
            "login_consumer_logins_by_platform_total", {"platform": "android", "app_version": "other"}
        )
        == 10
    )


def test_stuffing_networks_keep_their_peak_and_leave_after_the_window() -> None:
    now = [1000.0]
    waves = StuffingCollector(window=60, capacity=50, clock=lambda: now[0])
    waves.record({"203.0.113.0/24": 12, "198.51.100.0/24": 30})
    waves.record({"203.0.113.0/24": 11})  # a smaller count later in the same wave keeps the peak
    assert waves.current() == [("198.51.100.0/24", 30), ("203.0.113.0/24", 12)]
    now[0] += 45
    waves.record({"203.0.113.0/24": 15})
    now[0] += 30  # 75 s after 198.51.100.0/24's last detection, 30 s after 203.0.113.0/24's
    assert waves.current() == [("203.0.113.0/24", 15)]
    now[0] += 61
    assert waves.current() == []
    waves.record({"203.0.113.0/24": 10})  # a new wave starts from its own count
    assert waves.current() == [("203.0.113.0/24", 10)]


def test_stuffing_networks_are_bounded() -> None:
    waves = StuffingCollector(window=600, capacity=30)
    for n in range(100):
        waves.record({f"10.0.{n}.0/24": n + 10})
    top = waves.current()
    assert len(top) == TOP_N
    assert top[0] == ("10.0.99.0/24", 109)
    assert len(waves._seen) == 30


def test_a_stuffing_detection_reaches_the_network_gauge() -> None:
    """The in-process detectors (credential_stuffing included) feed the gauge through BatchStats."""
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry, stuffing_window=600)
    settings = load_settings(ConsumerSettings, metrics_port=0, stuffing_accounts=5)
    now = time.time()
    events = [
        {"user_id": f"acct{n}", "ip": f"203.0.113.{n}", "timestamp": int(now) + n, "outcome": "failure"}
        for n in range(8)
    ]
    batch = [Message(topic="t", partition=0, offset=n, value=orjson.dumps(e)) for n, e in enumerate(events)]
    detectors = AllDetectors(settings.detector_config())
    result = Processor.from_settings(settings, detectors).process(batch, now)
    metrics.record_batch(result.stats, len(result.outputs))
    assert (
        registry.get_sample_value("login_consumer_stuffing_network_accounts", {"network": "203.0.113.0/24"})
        == 8
    )
