"""`make demo DURATION=N` runs the whole pipeline and prints `processed: N` with N > 0."""

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
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--duration", "8"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    match = re.search(r"^processed: (\d+)$", proc.stdout, re.MULTILINE)
    assert match, proc.stdout[-2000:]
    assert int(match.group(1)) > 0
