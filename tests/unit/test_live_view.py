"""login_devtools/live_view.py: figures from real prometheus-client exposition text, windows, and a frame that
fits 80x24 whatever the numbers."""

from __future__ import annotations

import io
import json

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import generate_latest
from rich.console import Console

from login_devtools import live_view

lv = live_view


def consumer_text(  # noqa: PLR0917 - a table of figures, read positionally in the tests
    processed: int,
    levels: dict[str, int],
    detections: dict[str, int],
    latencies: list[float],
    dlq: dict[str, int] | None = None,
    ips: dict[str, int] | None = None,
) -> str:
    """/metrics text of a registry holding the consumer's metric names (docs/metrics.md)."""
    reg = CollectorRegistry()
    Counter("login_consumer_events_processed", "", registry=reg).inc(processed)
    Counter("login_consumer_events_consumed", "", registry=reg).inc(processed + sum((dlq or {}).values()))
    level = Counter("login_consumer_risk_level", "", ["level"], registry=reg)
    for name, n in levels.items():
        level.labels(name).inc(n)
    det = Counter("login_consumer_detections", "", ["detector"], registry=reg)
    for name, n in detections.items():
        det.labels(name).inc(n)
    dead = Counter("login_consumer_events_dlq", "", ["reason"], registry=reg)
    for name, n in (dlq or {}).items():
        dead.labels(name).inc(n)
    flagged = Gauge("login_consumer_flagged_ip_events", "", ["ip"], registry=reg)
    for ip, n in (ips or {}).items():
        flagged.labels(ip).set(n)
    Gauge("login_consumer_lag_messages", "", ["topic", "partition"], registry=reg).labels("t", "0").set(7)
    hist = Histogram(
        "login_consumer_event_latency_seconds",
        "",
        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
        registry=reg,
    )
    for value in latencies:
        hist.observe(value)
    return generate_latest(reg).decode()


def test_quantile_interpolates_like_prometheus() -> None:
    # 100 observations: 98 at 3 ms (bucket 0.0025-0.005), 2 at 80 ms (bucket 0.05-0.1)
    samples = lv.parse(consumer_text(0, {}, {}, [0.003] * 98 + [0.08] * 2))
    cumulative = lv.buckets(samples, "login_consumer_event_latency_seconds")
    # rank 99 lies in (0.05, 0.1] holding ranks 99..100: 0.05 + 0.05 * (99 - 98) / 2
    assert lv.quantile(0.99, cumulative) == pytest.approx(0.075)
    assert lv.quantile(0.5, cumulative) == pytest.approx(0.0025 + 0.0025 * 50 / 98)
    assert lv.quantile(0.99, {}) is None
    assert lv.quantile(0.99, {float("inf"): 0.0}) is None


def test_figures_over_the_last_minute() -> None:
    tracker = lv.Tracker()
    first = consumer_text(1000, {"low": 900, "medium": 90, "high": 10}, {"brute_force": 3}, [0.002] * 50)
    later = consumer_text(
        1600,
        {"low": 1400, "medium": 170, "high": 30},
        {"brute_force": 5, "new_device": 40},
        [0.002] * 50 + [0.4] * 100,
        dlq={"not_json": 4, "invalid_ip": 1},
        ips={"203.0.113.7": 30, "203.0.113.9": 12, "198.51.100.1": 20, "2001:db8::1": 5},
    )
    tracker.add(lv.Scrape(100.0, {}, lv.parse(first)))
    tracker.add(lv.Scrape(110.0, {}, lv.parse(later)))
    fig = tracker.figures()
    assert fig.processed == 1600
    assert fig.rates["processed"] == pytest.approx(60.0)  # 600 in 10 s
    assert fig.risk == {"low": 1400, "medium": 170, "high": 30}
    assert fig.detections["brute_force"] == 2  # 5 - 3 within the window
    assert fig.detections["new_device"] == 40
    assert fig.detections["impossible_travel"] == 0  # every detector is shown
    assert fig.window == 10.0
    assert fig.lag == 7
    assert fig.dead_letters == {"not_json": 4, "invalid_ip": 1}
    assert fig.networks[:2] == [("203.0.113.0/24", 42), ("198.51.100.0/24", 20)]
    assert ("2001:db8::/64", 5) in fig.networks
    # p99 over the window sees only the 100 new observations at 0.4 s (bucket 0.25-0.5)
    assert fig.p99 == pytest.approx(0.25 + 0.25 * 99 / 100)
    # a minute later, the first scrape has left the window
    tracker.add(lv.Scrape(175.0, {}, lv.parse(later)))
    assert tracker.figures().detections["new_device"] == 0


def test_high_risk_records_only() -> None:
    record = {
        "user_id": "u-1",
        "event_time": "2026-01-31T13:05:09Z",
        "geo": {"country_code": "RU"},
        "risk_level": "high",
        "risk_score": 85,
        "reasons": ["brute_force", "failed_login"],
    }
    event = lv.high_risk(json.dumps(record).encode())
    assert event == lv.HighRisk("13:05:09", "u-1", "RU", 85, ("brute_force", "failed_login"))
    assert lv.high_risk(json.dumps(record | {"risk_level": "medium"}).encode()) is None
    by_locale = lv.high_risk(json.dumps(record | {"geo": None, "locale": {"country_code": "US"}}).encode())
    assert by_locale.country == "US"
    assert lv.high_risk(b"{broken") is None


@pytest.mark.parametrize("scale", [0, 1, 10**9])
def test_the_frame_fits_80x24(scale: int) -> None:
    long_reasons = tuple(f"reason_number_{i}_with_a_long_name" for i in range(6))
    fig = lv.Figures(
        seconds=12.0,
        produced=123 * scale,
        consumed=120 * scale,
        processed=120 * scale,
        dead_lettered=3 * scale,
        rates={"produced": 5.0 * scale, "processed": 5.0 * scale, "dead_lettered": 0.1 * scale},
        lag=float(scale),
        risk={"low": 100 * scale, "medium": 15 * scale, "high": 5 * scale},
        detections={d: float(scale) for d in lv.DETECTORS},
        window=60.0,
        dead_letters={"timestamp_out_of_range": scale, "not_json": scale} if scale else {},
        networks=[(f"2001:db8:{i}:{i}::/64", float(scale)) for i in range(5)] if scale else [],
        p99=0.0123 * scale if scale else None,
        latest=[lv.HighRisk("13:05:09", "a-very-long-user-identifier-0001", "RU", 99, long_reasons)] * 6
        if scale
        else [],
        alerts=[
            lv.RoutedAlert(
                "LoginStreamCredentialStuffingWave",
                "critical",
                state,
                ("security-pager", "security"),
                {"network": "185.220.101.0/24", "detector": "credential_stuffing", "namespace": "ns"},
            )
            for state in ("active", "suppressed", "active")
        ]
        if scale
        else [],
    )
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(lv.render(fig, "title " * 30, "footer " * 30))
    lines = out.getvalue().rstrip("\n").splitlines()
    assert len(lines) <= 24
    assert max(len(line) for line in lines) <= 80
    text = out.getvalue()
    assert "last min" in text
    if scale:
        assert f"{100 * scale:,}" in text  # low
        assert "RU" in text
        assert "alerts (Alertmanager): 2 firing, 1 inhibited or silenced" in text
        assert "CredentialStuffingWave (critical) 185.220.101.0/24 -> security-pager+security" in text
    else:
        assert "alerts (Alertmanager): 0 firing" in text
        assert "no high-risk event yet" in text
        assert "none flagged yet" in text
