"""`make demo` and `make demo DURATION=30`, as the README's first-run section shows them.

README: "`make demo DURATION=30` runs for 30 s and prints a summary read after the consumer drained
(`produced`, `processed: N`, `dead-lettered`, `lag`)"; `make demo` "starts a local Kafka broker and the
whole pipeline with a live view (Ctrl-C stops)". `make help`: "DURATION=30 stops after 30 s".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
import urllib.request
from collections.abc import Iterator

import pytest

from tests.readme.conftest import ROOT, Interactive, Ran, alive, recorded_procs, run, running_as
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(1800)]
DEMO = ROOT / ".cache" / "demo"


def figures(ran: Ran) -> dict[str, float]:
    found = dict(
        re.findall(r"^(produced|processed|dead-lettered|lag|  seconds): +([\d.]+)$", ran.stdout, re.M)
    )
    assert {"produced", "processed", "dead-lettered", "lag", "  seconds"} <= set(found), ran.tail()
    return {k.strip(): float(v) for k, v in found.items()}


def producer_events(event: str) -> list[dict[str, object]]:
    lines = (DEMO / "login-producer.log").read_text().splitlines()
    return [json.loads(line) for line in lines if f'"event": "{event}"' in line]


def processed(metrics_url: str) -> float:
    try:
        text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()  # noqa: S310 - loopback
    except OSError:
        return 0.0
    found = re.search(r"^login_consumer_events_processed_total(?:\{[^}]*\})? (\S+)$", text, re.M)
    return float(found.group(1)) if found else 0.0


def demo_pids() -> list[int]:
    return [int(p["pid"]) for p in recorded_procs("demo")]


@pytest.fixture(autouse=True)
def no_demo_left() -> Iterator[None]:
    """The demo's services run in sessions of their own: a test that fails half-way stops them here."""
    yield
    for proc in recorded_procs("demo"):
        if running_as(int(proc["pid"]), str(proc["name"])):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(proc["pid"]), signal.SIGKILL)


@runs("make demo DURATION=30")
def test_demo_with_duration_runs_30_seconds_and_prints_the_drained_summary() -> None:
    ran = run("make demo DURATION=30", timeout=600)
    assert ran.returncode == 0, ran.tail()
    assert "a service exited early" not in ran.out, ran.tail()
    assert "summary (read after the consumer drained)" in ran.stdout
    got = figures(ran)
    assert got["processed"] > 0
    assert got["processed"] + got["dead-lettered"] == got["produced"], ran.tail()
    assert got["lag"] == 0
    assert 30 <= got["seconds"] < 30 + 60, ran.tail()  # 30 s from ready, then a bounded drain
    # the producer ran until the demo stopped it: DURATION=30 was the demo's, not the producer's
    start, stop = producer_events("producer.start")[-1], producer_events("producer.stop")[-1]
    assert start["duration"] == 0, start
    assert stop["signalled"] is True, stop
    for title in ("throughput", "lag", "risk"):  # the links into Prometheus' graph UI
        assert re.search(rf"^  {title} +http://127\.0\.0\.1:\d+/graph\?g0\.expr=", ran.stdout, re.M), title
    assert "risk levels" in ran.stdout  # the live view's last frame
    assert not [pid for pid in demo_pids() if alive(pid)], "the demo left processes running"


@runs("make demo")
def test_demo_runs_until_ctrl_c_then_drains_and_summarises() -> None:
    demo = Interactive("make demo")
    try:
        demo.wait_for("Prometheus http", timeout=300)  # links printed: the services are starting
        consumer = next(p for p in recorded_procs("demo") if p["name"] == "login-consumer")
        url = f"http://127.0.0.1:{consumer['port']}/metrics"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and processed(url) <= 0:  # until something went through
            time.sleep(0.5)
        ran = demo.ctrl_c(timeout=120)
    finally:
        demo.kill()
    assert "summary (read after the consumer drained)" in ran.stdout, ran.tail()
    got = figures(ran)
    assert got["processed"] > 0, ran.tail()
    assert got["lag"] == 0
    assert not [pid for pid in demo_pids() if alive(pid)], "Ctrl-C left demo processes running"
