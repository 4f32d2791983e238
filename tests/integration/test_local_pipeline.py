"""`make run` / `health` / `logs` / `monitor` / `watch` / `stop` on the local pipeline, against the real
broker, with real services and a real Prometheus (login_devtools/local_pipeline.py,
login_devtools/live_view.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from login_common.kafka import wait_for_broker
from login_devtools import live_view
from tests.observability.traffic import inject

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = "login_devtools.local_pipeline"
LIVE_VIEW = "login_devtools.live_view"

pytestmark = pytest.mark.integration


def script(
    module: str, *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def alive(pid: int) -> bool:
    """Running: not gone and not a zombie waiting for init to reap it."""
    ps = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return ps.stdout.strip()[:1] not in ("", "Z")


def pids_alive(run_dir: Path) -> dict[str, bool]:
    state = json.loads((run_dir / "pipeline.json").read_text())
    return {proc["name"]: alive(proc["pid"]) for proc in state["procs"]}


@pytest.fixture(scope="module")
def pipeline(kafka: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[dict[str, str], Path]]:
    """`run` once for the module (returns while everything keeps running); `stop` at the end if a test
    has not stopped it."""
    run_dir = tmp_path_factory.mktemp("run")
    suffix = os.urandom(4).hex()
    env = {
        **os.environ,
        "RUN_DIR": str(run_dir),
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": f"lp-in-{suffix}",
        "OUTPUT_TOPIC": f"lp-out-{suffix}",
        "DLQ_TOPIC": f"lp-dlq-{suffix}",
        "GROUP_ID": f"lp-group-{suffix}",
        "CONSUMER_PORT": "0",
        "PRODUCER_PORT": "0",
        "PROMETHEUS_PORT": "0",
        "ALERTMANAGER_PORT": "0",
        "JAEGER_PORT": "0",
    }
    started = time.monotonic()
    out = script(PIPELINE, "run", "--rate", "300", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    assert time.monotonic() - started < 150
    assert "local pipeline running" in out.stdout
    assert "/graph?g0.expr=" in out.stdout
    yield env, run_dir
    if (run_dir / "pipeline.json").exists():
        script(PIPELINE, "stop", env=env)


def poll(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(1)


def test_run_returns_with_everything_running_in_the_background(
    pipeline: tuple[dict[str, str], Path],
) -> None:
    env, run_dir = pipeline
    assert pids_alive(run_dir) == {
        "login-consumer": True,
        "login-producer": True,
        "prometheus": True,
        "alertmanager": True,
        "jaeger": True,
    }
    again = script(PIPELINE, "run", env=env)
    assert again.returncode == 0
    assert "already runs" in again.stdout


def test_health_checks_every_part(pipeline: tuple[dict[str, str], Path]) -> None:
    env, _ = pipeline
    last: list[subprocess.CompletedProcess[str]] = []

    def healthy() -> bool:
        last.append(script(PIPELINE, "health", env=env))
        return last[-1].returncode == 0

    poll("make health to pass (Prometheus targets up)", healthy)
    lines = last[-1].stdout.splitlines()
    assert len(lines) == 6, last[-1].stdout
    assert all(line.startswith("ok ") for line in lines)
    assert "targets up 2/2" in last[-1].stdout
    assert re.search(r"login-consumer .* /ready 200: in group", last[-1].stdout)
    assert re.search(r"^ok +alertmanager pid \d+ :\d+ +/-/ready 200$", last[-1].stdout, re.M)
    assert re.search(r"^ok +jaeger pid \d+ :\d+ +/api/services 200$", last[-1].stdout, re.M)


def test_live_view_shows_the_stream_in_80x24(kafka: str, pipeline: tuple[dict[str, str], Path]) -> None:
    env, run_dir = pipeline
    inject(kafka, env["INPUT_TOPIC"], rounds=2, interval=0.2)  # attacks and malformed messages
    state = json.loads((run_dir / "pipeline.json").read_text())
    consumer = next(p for p in state["procs"] if p["name"] == "login-consumer")
    metrics_url = f"http://127.0.0.1:{consumer['port']}/metrics"

    def dead_lettered() -> bool:
        with urllib.request.urlopen(metrics_url, timeout=5) as resp:
            text = resp.read().decode()
        return 'login_consumer_events_dlq_total{reason="not_json"} 2.0' in text

    poll("the injected malformed messages to be dead-lettered", dead_lettered)
    out = script(LIVE_VIEW, "--once", "--svg", str(run_dir / "view.svg"), env=env)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.rstrip("\n").splitlines()
    assert len(lines) <= 24, out.stdout
    assert max(len(line) for line in lines) <= 80, out.stdout
    for section in (
        "throughput",
        "risk levels",
        "detections, last",
        "DLQ by error type",
        "top flagged networks",
        "latest high-risk events",
        "p99 latency",
        "consumer lag",
    ):
        assert section in out.stdout, section
    assert re.search(r"not_json +2\b", out.stdout), out.stdout
    assert re.search(r"invalid_ip +2\b", out.stdout), out.stdout
    assert "no high-risk event yet" not in out.stdout  # the injected attacks score high
    assert (run_dir / "view.svg").read_text().startswith("<svg")

    # the renderer, fed one real /metrics text, shows exactly its figures
    lv = live_view
    with urllib.request.urlopen(metrics_url, timeout=5) as resp:
        samples = lv.parse(resp.read().decode())
    tracker = lv.Tracker()
    tracker.add(lv.Scrape(time.monotonic(), {}, samples))
    fig = tracker.figures()
    processed = lv.total(samples, "login_consumer_events_processed_total")
    assert processed > 0
    assert fig.processed == processed
    # the figures are those of the text (not an invariant of two counters of a running consumer: a scrape
    # can fall between the increments of processed and of its risk level)
    levels = lv.by_label(samples, "login_consumer_risk_level_total", "level")
    assert sum(levels.values()) > 0
    assert {level: n for level, n in fig.risk.items() if n} == {k: v for k, v in levels.items() if v}
    assert fig.dead_letters["not_json"] == 2
    assert fig.networks, "the credential-stuffing address is flagged"
    from rich.console import Console

    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(lv.render(fig, "t"))
    text = console.export_text()
    assert f"{processed:,.0f}" in text


def test_logs_monitor_then_stop(kafka: str, pipeline: tuple[dict[str, str], Path]) -> None:
    env, run_dir = pipeline
    logs = script(PIPELINE, "logs", "--lines", "3", "--no-follow", env=env)
    assert logs.returncode == 0
    for name in ("login-consumer |", "login-producer |", "prometheus     |"):
        assert name in logs.stdout, logs.stdout[-2000:]
    monitor = script(PIPELINE, "monitor", env=env)
    assert monitor.returncode == 0, monitor.stderr
    for title in ("throughput", "lag", "risk"):
        assert re.search(rf"^  {title} +http://127\.0\.0\.1:\d+/graph\?g0\.expr=", monitor.stdout, re.M)
    assert re.search(r"^alerts: \d+ firing, \d+ pending$", monitor.stdout, re.M)
    assert re.search(
        r"^Alertmanager http://127\.0\.0\.1:\d+: \d+ alert\(s\), routed to$", monitor.stdout, re.M
    )

    state = json.loads((run_dir / "pipeline.json").read_text())
    stop = script(PIPELINE, "stop", env=env)
    assert stop.returncode == 0, stop.stderr
    for name in ("login-producer", "login-consumer", "prometheus", "alertmanager", "jaeger"):
        assert name in stop.stdout
    assert not (run_dir / "pipeline.json").exists()
    assert not any(alive(proc["pid"]) for proc in state["procs"])
    wait_for_broker(kafka, timeout=10)  # the broker was not started by `run`: it stays
    after = script(PIPELINE, "health", env=env)
    assert after.returncode == 1
    assert "make run" in after.stderr
