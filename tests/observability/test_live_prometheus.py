"""Real parts: producer + consumer on the real broker, scraped by a real Prometheus with the alert rules.

One run (module fixture, ~30 s) feeds every test here: the services' /metrics pass ``promtool check
metrics``; every PromQL expression of every dashboard panel and every alert parses; every panel target
returns data (the failure message names each one that does not); every rule evaluates without error and
no alert fires on a healthy pipeline. The same Prometheus scrapes the local broker's Strimzi Metrics
Reporter (login_devtools/local_kafka.py), so the Kafka and KRaft dashboards (dashboards/strimzi/) are proven
against the metric names Strimzi's Kafka pods serve.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from login_devtools import build_dashboards, daemons, local_kafka, local_prometheus
from tests.observability import queries, traffic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
SCRAPE_S = 1
RATE_INTERVAL_S = 10  # >= 4 scrapes, like Grafana's $__rate_interval
WARMUP_S = float(os.environ.get("OBS_TEST_WARMUP", "20"))  # seconds of scraping before the queries
REPORT = ROOT / ".cache" / "observability" / "live-report.json"

lp, lk = local_prometheus, local_kafka

# Panels whose data depends on work not on this branch yet, with the reason. Strict both ways: a pending
# panel without data is reported (warning + the printed summary) instead of failing; a pending panel that
# now has data fails the test until it is removed from here. Nothing else may be empty.
PENDING: dict[str, str] = {}  # panel title -> why it may be empty for now (none: every panel must show data)


@dataclass
class Live:
    prom: Any
    ports: dict[str, int]
    started: float
    logs: Path
    injected: int = 0
    metrics_text: dict[str, str] = field(default_factory=dict)
    kafka_metrics: str | None = None  # host:port of the broker's Strimzi Metrics Reporter, if it has one

    def series(self, selector: str) -> list[dict[str, str]]:
        data: list[dict[str, str]] = self.prom.api(
            "series", **{"match[]": selector, "start": self.started - 60, "end": time.time()}
        )
        return data


def _spawn(name: str, env: dict[str, str], log: Path, args: list[str]) -> subprocess.Popen[bytes]:
    exe = shutil.which(name, path=str(BIN)) or name
    with open(log, "wb") as out:
        return subprocess.Popen([exe, *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - http URLs built by the test
        return str(resp.read().decode())


def _wait(
    what: str, check: Callable[[], bool], timeout: float, procs: dict[Path, subprocess.Popen[bytes]]
) -> None:
    """Poll ``check`` until true; fail with the log tail if one of ``procs`` (log → process) exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for log, proc in procs.items():
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
                pytest.fail(f"{proc.args!r} exited with {proc.returncode} while waiting for {what}:\n{tail}")
        with contextlib.suppress(Exception):  # not there yet: retried until the deadline
            if check():
                return
        time.sleep(0.5)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")


def broker_metrics(kafka: str) -> str | None:
    """host:port of the Strimzi Metrics Reporter of the broker under test: the local broker's (of
    login_devtools/local_kafka.py, KAFKA_PORT) when the tests use it and it answers; None otherwise."""
    if kafka != lk.local_bootstrap():
        return None
    url = lk.metrics_url()
    try:
        _get(url)
    except OSError:
        return None
    return url.removeprefix("http://").removesuffix("/metrics")


def strimzi_dashboard(path: Path) -> bool:
    return path.parent.name == "strimzi"


@pytest.fixture(scope="module")
def live(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    try:
        lp.find_binary()
    except lp.PrometheusError as exc:
        pytest.fail(str(exc))
    from login_common.kafka import ensure_topics

    suffix = os.urandom(5).hex()
    topics = {"input": f"obs-in-{suffix}", "output": f"obs-out-{suffix}", "dlq": f"obs-dlq-{suffix}"}
    ensure_topics(kafka, {topics["input"]: 3, topics["output"]: 3, topics["dlq"]: 1})
    work = tmp_path_factory.mktemp("obs-live")
    ports = {"consumer": daemons.free_port(), "producer": daemons.free_port()}
    base = {
        **os.environ,
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": topics["input"],
        "OUTPUT_TOPIC": topics["output"],
        "DLQ_TOPIC": topics["dlq"],
        "GROUP_ID": f"obs-group-{suffix}",
        "LOG_FORMAT": "json",
    }
    consumer = _spawn(
        "login-consumer", {**base, "METRICS_PORT": str(ports["consumer"])}, work / "consumer.log", []
    )
    producer = _spawn(
        "login-producer",
        {**base, "METRICS_PORT": str(ports["producer"])},
        work / "producer.log",
        ["--rate", "200"],
    )
    procs = [consumer, producer]
    prom = None
    stop_injecting = threading.Event()
    injector = None
    result: dict[str, int] = {}
    kafka_metrics = broker_metrics(kafka)
    jobs = {
        lp.CONSUMER_JOB: [f"127.0.0.1:{ports['consumer']}"],
        lp.PRODUCER_JOB: [f"127.0.0.1:{ports['producer']}"],
    }
    if kafka_metrics:
        jobs[lp.KAFKA_JOB] = [kafka_metrics]
    try:
        prom = lp.Prometheus.start(
            jobs,
            workdir=work / "prometheus",
            scrape_interval=f"{SCRAPE_S}s",
            labels={lp.KAFKA_JOB: lp.LOCAL_KAFKA_LABELS},
            settings={lp.KAFKA_JOB: lp.KAFKA_SCRAPE},
        )
        procs_and_prom = {
            work / "consumer.log": consumer,
            work / "producer.log": producer,
            prom.log: prom.process,
        }

        def targets_up() -> bool:
            active = prom.api("targets", state="active")["activeTargets"]
            return len(active) == len(jobs) and all(t["health"] == "up" for t in active)

        _wait("every scrape target up", targets_up, 60, procs_and_prom)
        started = time.time()

        def inject() -> None:
            result["sent"] = traffic.inject(kafka, topics["input"], 8, 2.0, stop_injecting.is_set)

        injector = threading.Thread(target=inject, name="attack-injector", daemon=True)
        injector.start()

        def consumed() -> bool:
            text = _get(f"http://127.0.0.1:{ports['consumer']}/metrics")
            return any(
                line.startswith("login_consumer_events_processed_total ") and float(line.split()[1]) > 0
                for line in text.splitlines()
            )

        _wait("the consumer to process events", consumed, 60, procs_and_prom)
        _wait("warm-up", lambda: time.time() - started >= WARMUP_S, WARMUP_S + 30, procs_and_prom)
        state = Live(prom, ports, started, work, kafka_metrics=kafka_metrics)
        for svc, port in ports.items():
            state.metrics_text[svc] = _get(f"http://127.0.0.1:{port}/metrics")
        if kafka_metrics:
            state.metrics_text["kafka"] = _get(f"http://{kafka_metrics}/metrics")
        injector.join(30)
        state.injected = result.get("sent", 0)
        yield state
    finally:
        stop_injecting.set()
        if injector is not None:
            injector.join(30)
        for proc in reversed(procs):
            _stop(proc)
        if prom is not None:
            prom.stop()


@pytest.mark.parametrize("service", ["consumer", "producer"])
def test_promtool_check_metrics(live: Live, service: str) -> None:
    text = live.metrics_text[service]
    assert text.strip(), f"{service} exposed no metrics"
    out = subprocess.run(
        [shutil.which("promtool") or "/usr/bin/promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        check=False,
    )
    problems = (out.stdout + out.stderr).strip()
    assert out.returncode == 0, f"promtool check metrics on {service}:\n{problems}"
    assert not problems, f"promtool check metrics on {service}:\n{problems}"


def test_the_broker_serves_strimzi_metrics(live: Live) -> None:
    """The Kafka dashboards need the broker's own metrics: the local broker loads the Strimzi Metrics
    Reporter. Another broker (KAFKA_BOOTSTRAP, testcontainers) has none: skipped, except in CI."""
    if live.kafka_metrics is None:
        message = (
            f"the broker under test has no Strimzi Metrics Reporter at {lk.metrics_url()}: the Kafka "
            "dashboards need the local broker of login_devtools/local_kafka.py (make kafka-down kafka-up)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    text = live.metrics_text["kafka"]
    for name in (
        "kafka_server_kafkaserver_brokerstate",
        "kafka_server_brokertopicmetrics_bytesinpersec_total",
        "kafka_server_raft_metrics_current_state_info",
        "jvm_memory_used_bytes",
    ):
        assert f"\n{name}" in text, f"{name} missing from the broker's metrics"


def test_every_alert_expression_parses_and_rules_evaluate(live: Live) -> None:
    alerts = queries.alert_queries()
    assert alerts
    errors = []
    for alert in alerts:
        try:
            live.prom.api("query", query=alert.expr, time=time.time())
        except lp.PrometheusError as exc:
            errors.append(f"{alert.alert}: {exc}")
    assert not errors, "alert expressions Prometheus rejected:\n" + "\n".join(errors)
    # The rule file is loaded and every rule has been evaluated without error.
    groups = live.prom.api("rules")["groups"]
    loaded = {r["name"]: r for g in groups for r in g["rules"]}
    assert set(loaded) == {a.alert for a in alerts}
    bad = {n: r.get("lastError") for n, r in loaded.items() if r.get("health") != "ok"}
    assert not bad, f"rules not healthy in Prometheus: {bad}"


def test_no_alert_fires_on_a_healthy_pipeline(live: Live) -> None:
    """No platform alert: the attacks the fixture injects may (and should) raise security alerts
    (tests/observability/test_alert_routing.py proves those)."""
    firing = live.prom.api("query", query='ALERTS{alertstate="firing",category!="security"}')["result"]
    assert firing == [], f"alerts firing: {[a['metric'] for a in firing]}"


def test_every_dashboard_panel_returns_data(live: Live) -> None:
    now = time.time()
    builtins = queries.grafana_builtins(RATE_INTERVAL_S, 2 * SCRAPE_S, max(int(now - live.started), 10))
    resolver = queries.Variables(builtins, live.series)
    rows: list[dict[str, Any]] = []
    problems: list[str] = []
    for path in queries.dashboard_files():
        if strimzi_dashboard(path) and live.kafka_metrics is None:
            continue  # test_the_broker_serves_strimzi_metrics says why
        values, var_problems = resolver.resolve(queries.load_dashboard(path))
        problems += [f"{path.name}: {p}" for p in var_problems]
        for q in (q for q in queries.panel_queries() if q.dashboard == queries.load_dashboard(path)["title"]):
            expr = resolver.substitute(q.expr, values)
            row: dict[str, Any] = {
                "query": q.name,
                "panel": f"{q.dashboard} / {q.panel}",
                "expr": expr,
                "instant": q.instant,
            }
            try:
                if q.instant:
                    data = live.prom.api("query", query=expr, time=now)
                else:
                    data = live.prom.api(
                        "query_range", query=expr, start=live.started, end=now, step=SCRAPE_S
                    )
                row["series"] = len(data["result"])
            except lp.PrometheusError as exc:
                row["error"] = str(exc)
            rows.append(row)
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    errors = [f"  {r['query']}: {r['error']}\n      {r['expr']}" for r in rows if "error" in r]
    empty = [
        f"  {r['query']}\n      {r['expr']}"
        for r in rows
        if r.get("series") == 0 and r["panel"] not in PENDING
    ]
    pending_empty = sorted({r["panel"] for r in rows if r.get("series") == 0 and r["panel"] in PENDING})
    pending_with_data = sorted({r["panel"] for r in rows if r.get("series") and r["panel"] in PENDING})
    unknown_pending = sorted(set(PENDING) - {r["panel"] for r in rows})
    with_data = sum(1 for r in rows if r.get("series"))
    panels = {r["panel"] for r in rows}
    panels_empty = {r["panel"] for r in rows if not r.get("series")}
    summary = (
        f"{with_data}/{len(rows)} panel queries returned data; "
        f"{len(panels) - len(panels_empty)}/{len(panels)} panels show data (report: {REPORT})"
    )
    print(summary)
    for panel in pending_empty:
        message = f"panel shows nothing (pending: {PENDING[panel]}): {panel}"
        print(message)
        warnings.warn(message, stacklevel=1)
    assert rows, "no panel queries found in dashboards/"
    message = [summary]
    if problems:
        message += ["template variables:", *(f"  {p}" for p in problems)]
    if errors:
        message += ["queries Prometheus rejected:", *errors]
    if empty:
        message += ["panels that show nothing:", *empty]
    if pending_with_data:
        message += ["pending panels that now show data (remove them from PENDING):", *pending_with_data]
    if unknown_pending:
        message += ["PENDING names panels that do not exist:", *unknown_pending]
    assert not problems, "\n".join(message)
    assert not errors, "\n".join(message)
    assert not empty, "\n".join(message)
    assert not pending_with_data, "\n".join(message)
    assert not unknown_pending, "\n".join(message)


def _instant(live: Live, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = live.prom.api("query", query=expr, time=time.time())["result"]
    return result


def test_crafted_traffic_shows_on_the_panels(live: Live) -> None:
    """Not just any data: the injected attacks and malformed messages are what the panels show."""
    assert live.injected > 0
    users = {r["metric"]["user_id"] for r in _instant(live, "login_consumer_flagged_user_events")}
    assert any(u.startswith("bf-victim-") for u in users), f"brute-force victim not flagged: {users}"
    ips = {r["metric"]["ip"] for r in _instant(live, "login_consumer_flagged_ip_events")}
    assert {traffic.IP_DE, traffic.IP_RU} <= ips, f"attacking IPs not flagged: {ips}"
    reasons = {
        r["metric"]["reason"] for r in _instant(live, "sum by (reason) (login_consumer_events_dlq_total) > 0")
    }
    assert {"not_json", "missing_field", "invalid_ip"} <= reasons, reasons
    high = _instant(live, 'sum(login_consumer_risk_level_total{level="high"})')
    assert high, "no high-risk events"
    assert float(high[0]["value"][1]) >= live.injected / 2
    countries = {
        r["metric"]["country"] for r in _instant(live, "sum by (country) (login_consumer_logins_total)")
    }
    assert {"RU", "DE", "JP", "BR", "GB"} <= countries, countries


def test_every_stage_shows_throughput_and_lag(live: Live) -> None:
    """The topology (issue #10): both stages take in the events, and the stage-lag expression of the
    "Lag per stage" panel and of LoginStreamStageLagging labels the lag of both stages' input topics."""
    stage_lag = build_dashboards.stage_lag
    taken = {
        r["metric"]["stage"]: float(r["value"][1])
        for r in _instant(live, "sum by (stage) (login_consumer_stage_events_total)")
    }
    assert taken.get("user", 0) > 0, taken
    assert taken.get("network", 0) > 0, taken
    lag = _instant(live, f"sum by (stage, topic) ({stage_lag()})")
    stages = {r["metric"]["topic"]: r["metric"]["stage"] for r in lag}
    assert set(stages.values()) == {"user", "network"}, stages
    assert all(
        stage == "network" for topic, stage in stages.items() if topic.endswith("-network-repartition")
    )
    assert sum(1 for stage in stages.values() if stage == "user") == 1, stages  # the input topic alone
    commits = _instant(live, "sum(login_consumer_commits_total)")
    assert commits, "no commits counter"
    assert float(commits[0]["value"][1]) > 0, "no checkpoint committed"
