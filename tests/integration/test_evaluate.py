"""`make evaluate` in small: producer -> broker (3 partitions) -> one consumer process -> joined with the
labels; every detector must reach precision and recall >= 0.95."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_evaluate_via_the_broker_reaches_the_thresholds(kafka: str, tmp_path: Path) -> None:
    figures = tmp_path / "figures.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "login_devtools.evaluate",
            "--events",
            "30000",
            "--partitions",
            "3",
            "--bootstrap",
            kafka,
            "--json",
            str(figures),
        ],
        env={**os.environ, "ALIGNMENT_MAX_WAIT_MS": "5000"},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "PASS" in done.stdout
    result = json.loads(figures.read_text())
    assert result["events"] == 30_000
    assert result["dead_lettered"] == 0
    for name, cell in result["detectors"].items():
        assert cell["tp"] + cell["fn"] >= 100, name
        assert cell["precision"] >= 0.95, (name, cell)
        assert cell["recall"] >= 0.95, (name, cell)
