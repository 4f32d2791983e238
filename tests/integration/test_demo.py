"""`make demo DURATION=N` runs the whole pipeline, shows the live view and prints a summary read after the
consumer drained: `processed: N` with N > 0 and processed + dead-lettered = produced."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration
def test_demo_with_duration_exits_0_and_processes_events(kafka: str, unique: Callable[[str], str]) -> None:
    env = {
        **os.environ,
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": unique("demo-in"),
        "OUTPUT_TOPIC": unique("demo-out"),
        "DLQ_TOPIC": unique("demo-dlq"),
        "GROUP_ID": unique("demo-group"),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "login_devtools.demo", "--duration", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = dict(re.findall(r"^(produced|processed|dead-lettered|lag): (\d+)$", proc.stdout, re.MULTILINE))
    assert set(figures) == {"produced", "processed", "dead-lettered", "lag"}, proc.stdout[-2000:]
    produced, processed, dlq = (int(figures[k]) for k in ("produced", "processed", "dead-lettered"))
    assert processed > 0
    # read after the consumer drained: every event this run produced was processed or dead-lettered
    assert processed + dlq == produced, proc.stdout[-3000:]
    assert figures["lag"] == "0"
    assert "summary (read after the consumer drained)" in proc.stdout
    # the links into Prometheus' graph UI, and the live view's last frame
    for title in ("throughput", "lag", "risk"):
        assert re.search(rf"^  {title} +http://127\.0\.0\.1:\d+/graph\?g0\.expr=", proc.stdout, re.M), title
    assert "risk levels" in proc.stdout
    assert "latest high-risk events" in proc.stdout
