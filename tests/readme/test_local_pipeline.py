"""The local pipeline's commands (README "Local pipeline (no cluster)"), in the order a user runs them:
`make run`, then `make health`, `make watch`, `make logs`, `make monitor`, `make trace`, the picture's
live-view command, `make stop`; then `TRACING=0 make run`, `LOG_LEVEL=DEBUG make run` and `make clean`.
Each checks the exit code and what the README's line (and the target's `make help` line) promises."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.readme.conftest import ROOT, Interactive, Ran, alive, recorded_pipeline, recorded_procs, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(1800)]
RUN = ROOT / ".cache" / "run"
PICTURE = ".venv/bin/login-live-view --once --seconds 62 --svg docs/img/live-view.svg"


def procs() -> dict[str, dict[str, Any]]:
    assert recorded_pipeline("run") is not None, "no .cache/run/pipeline.json"
    return {str(p["name"]): p for p in recorded_procs("run")}


def pids() -> list[int]:
    return [int(p["pid"]) for p in procs().values()]


def first_config(log: Path) -> dict[str, object]:
    return dict(json.loads(log.read_text().splitlines()[0])["config"])


def first_line(log: Path) -> dict[str, object]:
    return dict(json.loads(log.read_text().splitlines()[0]))


@pytest.fixture(scope="module")
def started() -> Iterator[Ran]:
    ran = run("make run", timeout=600)
    yield ran
    if recorded_pipeline("run"):
        run("make stop", timeout=120)


@runs("make run")
def test_run_starts_everything_in_the_background_and_returns(started: Ran) -> None:
    assert started.returncode == 0, started.tail()
    assert re.search(
        r"^local pipeline running \(broker 127\.0\.0\.1:\d+, 200 events/s\):$", started.stdout, re.M
    )
    running = procs()
    # "broker, producer (RATE=200/s), consumer, Prometheus, Alertmanager and Jaeger in the background"
    assert set(running) == {"login-consumer", "login-producer", "prometheus", "alertmanager", "jaeger"}
    assert all(alive(int(p["pid"])) for p in running.values())
    assert (
        "next: `make watch` (live view), `make health`, `make logs`, `make monitor`, `make stop`"
        in started.stdout
    )


@runs("make health")
def test_health_reports_every_part_ok(started: Ran) -> None:
    ran = run("make health", timeout=120)
    assert ran.returncode == 0, ran.tail()
    for part in (
        "kafka 127.0.0.1:",
        "login-consumer pid",
        "login-producer pid",
        "prometheus pid",
        "jaeger pid",
    ):
        assert re.search(rf"^ok +{re.escape(part)}", ran.stdout, re.M), (part, ran.stdout)
    assert "targets up 2/2" in ran.stdout


@runs("make watch")
def test_watch_shows_the_live_view_and_ctrl_c_leaves_the_pipeline_running(started: Ran) -> None:
    watch = Interactive("make watch")
    try:
        time.sleep(8)
        ran = watch.ctrl_c()
    finally:
        watch.kill()
    assert "(Ctrl-C leaves it running)" in ran.stdout, ran.tail()
    assert "risk levels" in ran.stdout
    assert all(alive(pid) for pid in pids()), "Ctrl-C in make watch stopped the pipeline"


@runs("make logs")
def test_logs_follow_every_log_until_ctrl_c(started: Ran) -> None:
    logs = Interactive("make logs")
    try:
        first = logs.wait_for("login-producer | ", timeout=60)
        assert "login-consumer | " in first
        # following: a line appended to a log shows up (the services log events, not every message, so
        # a minute may pass without one; the line is appended as a service appends its own)
        marker = f'{{"event": "readme.follow", "n": {time.time_ns()}}}'
        with Path(str(procs()["login-producer"]["log"])).open("a") as log:
            log.write(marker + "\n")
        logs.wait_for(f"login-producer | {marker}", timeout=30)
        ran = logs.ctrl_c()
    finally:
        logs.kill()
    assert ran.stdout.count(marker) == 1
    # FOLLOW=0 (the README line's comment) prints the last LINES=20 of each log and returns
    once = run("make logs FOLLOW=0", timeout=60)
    assert once.returncode == 0, once.tail()
    per_source: dict[str, int] = {}
    for line in once.stdout.splitlines():
        if " | " in line:
            name = line.split(" | ", 1)[0].strip()
            per_source[name] = per_source.get(name, 0) + 1
    assert {"login-consumer", "login-producer", "prometheus"} <= set(per_source), per_source
    assert max(per_source.values()) <= 20, per_source


@runs("make monitor")
def test_monitor_prints_graph_links_that_answer_and_the_alerts(started: Ran) -> None:
    ran = run("make monitor", timeout=120)
    assert ran.returncode == 0, ran.tail()
    assert re.search(
        r"^Prometheus http://127\.0\.0\.1:\d+ \(alerts: http://127\.0\.0\.1:\d+/alerts\); graphs:$",
        ran.stdout,
        re.M,
    )
    for title in ("throughput", "lag", "risk"):
        link = re.search(rf"^  {title} +(http://\S+)$", ran.stdout, re.M)
        assert link, (title, ran.stdout)
        with urllib.request.urlopen(link.group(1), timeout=10) as resp:  # noqa: S310 - loopback
            assert resp.status == 200
    assert re.search(r"^alerts: \d+ firing, \d+ pending$", ran.stdout, re.M)
    # "... and where Alertmanager routed them"
    assert re.search(r"^Alertmanager http://127\.0\.0\.1:\d+: \d+ alert\(s\), routed to$", ran.stdout, re.M)


@runs("make trace")
def test_trace_lists_flagged_logins_and_prints_one_as_a_tree(started: Ran) -> None:
    listing = re.compile(r"^Jaeger http://127\.0\.0\.1:\d+: (\d+) recent high-risk login\(s\)", re.M)

    def flagged() -> Ran | None:
        ran = run("make trace", timeout=60)
        assert ran.returncode == 0, ran.tail()
        found = listing.search(ran.stdout)
        assert found, ran.stdout
        return ran if int(found.group(1)) > 0 else None

    deadline = time.monotonic() + 180  # the producer's attack scenarios flag logins within a minute or two
    ran = flagged()
    while ran is None and time.monotonic() < deadline:
        time.sleep(5)
        ran = flagged()
    assert ran is not None, "no high-risk login's trace reached Jaeger"
    trace_id = re.search(r"^  ([0-9a-f]{32})  \d+ spans, reasons: \S", ran.stdout, re.M)
    assert trace_id, ran.stdout
    producer_send = re.compile(r"^  login-producer: send user-login ", re.M)

    def tree_of_trace() -> Ran:
        tree = run(f"make trace ID={trace_id.group(1)}", timeout=60)
        assert tree.returncode == 0, tree.tail()
        return tree

    # each process exports its spans in its own batches (the SDK's schedule delay): the consumer's may be
    # in Jaeger before the producer's send span of the same trace; wait for that one, with a deadline
    deadline = time.monotonic() + 60
    tree = tree_of_trace()
    while not producer_send.search(tree.stdout) and time.monotonic() < deadline:
        time.sleep(2)
        tree = tree_of_trace()
    assert f"trace {trace_id.group(1)} (" in tree.stdout
    assert producer_send.search(tree.stdout), tree.stdout
    # the user stage's one span, child of the producer's send, with its wait in the topic
    consumer_span = re.search(r"^    login-consumer: process user-login .*$", tree.stdout, re.M)
    assert consumer_span, tree.stdout
    assert re.search(r" queued_ms=\d+ ", consumer_span.group(0)), consumer_span.group(0)
    assert "level=high" in tree.stdout or "detection=credential_stuffing" in tree.stdout, tree.stdout


@runs(PICTURE)
def test_the_pictures_live_view_command_writes_the_svg(started: Ran) -> None:
    svg = ROOT / "docs" / "img" / "live-view.svg"
    committed = svg.read_bytes()
    try:
        ran = run(PICTURE, timeout=300)
        assert ran.returncode == 0, ran.tail()
        written = svg.read_text()
        assert written.lstrip().startswith("<svg"), written[:200]
        assert "make&#160;watch" in written or "make watch" in written
        assert "risk levels" in ran.stdout
    finally:
        svg.write_bytes(committed)  # the committed picture stays as it is


@runs("make stop")
def test_stop_ends_what_run_started_and_leaves_the_broker_it_did_not_start(started: Ran) -> None:
    before = pids()
    ran = run("make stop", timeout=180)
    assert ran.returncode == 0, ran.tail()
    assert re.search(
        r"^stopped: login-producer \(pid \d+\), login-consumer \(pid \d+\), prometheus \(pid \d+\), "
        r"alertmanager \(pid \d+\), jaeger \(pid \d+\)$",
        ran.stdout,
        re.M,
    ), ran.tail()
    assert not [pid for pid in before if alive(pid)]
    assert recorded_pipeline("run") is None
    status = run("make kafka-status", timeout=60)
    assert "state:     running" in status.stdout, status.tail()  # `make run` did not start it


@runs("TRACING=0 make run")
def test_tracing_can_be_left_off() -> None:
    ran = run("TRACING=0 make run", timeout=600)
    try:
        assert ran.returncode == 0, ran.tail()
        assert "jaeger" not in procs()
        assert "Jaeger" not in ran.stdout
        for name in ("login-producer", "login-consumer"):
            assert first_line(RUN / f"{name}.log")["tracing"] == "off", name
    finally:
        stop = run("make stop", timeout=180)
    assert stop.returncode == 0, stop.tail()


@runs("LOG_LEVEL=DEBUG make run", "make clean")
def test_service_settings_come_from_the_environment_and_clean_removes_the_state() -> None:
    ran = run("LOG_LEVEL=DEBUG make run", timeout=600)
    try:
        assert ran.returncode == 0, ran.tail()
        for name in ("login-producer", "login-consumer"):
            assert first_config(RUN / f"{name}.log")["log_level"] == "DEBUG", name
    finally:
        stop = run("make stop", timeout=180)
    assert stop.returncode == 0, stop.tail()
    # the same setting on make's command line is make's: named in a note, not passed to the services
    ran = run("make run LOG_LEVEL=DEBUG", timeout=600)
    assert ran.returncode == 0, ran.tail()
    assert "note: the services do not get LOG_LEVEL from make's command line" in ran.stdout
    assert first_config(RUN / "login-producer.log")["log_level"] == "INFO"
    running = pids()
    cleaned = run("make clean", timeout=180)
    assert cleaned.returncode == 0, cleaned.tail()
    assert not [pid for pid in running if alive(pid)], "make clean left the pipeline running"
    for gone in (".cache/run", ".cache/demo", ".cache/prometheus", ".mypy_cache", ".ruff_cache"):
        assert not (ROOT / gone).exists(), gone
    assert (ROOT / ".venv" / "bin" / "python").exists()  # ".venv stays"
