"""login_devtools/evaluate.py: the confusion table, and an in-process evaluation of a producer stream (no
broker)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


from login_devtools import evaluate  # noqa: E402


def test_confusion_counts_every_labelled_event() -> None:
    labels = {
        "a": frozenset({"brute_force"}),
        "b": frozenset({"brute_force", "credential_stuffing"}),
        "c": frozenset(),
        "d": frozenset({"new_device"}),
    }
    detected = {"a": frozenset({"brute_force"}), "c": frozenset({"brute_force", "new_device"})}  # b, d lost
    table = evaluate.score(labels, detected)
    bf = table["brute_force"]
    assert (bf.tp, bf.fp, bf.fn, bf.tn) == (1, 1, 1, 1)
    assert bf.precision == 0.5
    assert bf.recall == 0.5
    assert bf.f1 == 0.5
    nd = table["new_device"]
    assert (nd.tp, nd.fp, nd.fn, nd.tn) == (0, 1, 1, 2)
    assert nd.f1 == 0.0
    quiet = table["impossible_travel"]
    assert (quiet.precision, quiet.recall) == (1.0, 1.0)  # nothing to find, nothing found
    text = evaluate.render(table, 0.95)
    assert "brute_force" in text
    assert "BELOW" in text


@pytest.mark.slow
def test_in_process_evaluation_of_the_default_mix_reaches_the_target(tmp_path: Path) -> None:
    """30k events of the default mix through Processor + the stateful detectors: every detector >= 0.95."""
    out = tmp_path / "events.jsonl"
    subprocess.run(
        [str(BIN / "login-producer"), "--rate", "0", "--count", "30000", "--seed", "42", "--out", str(out)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    labels, detected, dead = evaluate.run_in_process(out, partitions=6)
    assert dead == 0
    assert len(labels) == len(detected) == 30_000
    table = evaluate.score(labels, detected)
    for cell in table.values():
        assert cell.tp + cell.fn >= 100, f"too few {cell.detector} positives to measure"
        assert cell.precision >= 0.95, cell.figures()
        assert cell.recall >= 0.95, cell.figures()
