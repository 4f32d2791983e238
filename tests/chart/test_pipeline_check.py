"""The chart's pipeline check (`helm test` hook, `make e2e` client) against a real broker and consumer.

The script runs as the hook runs it, as a separate process with only its arguments; the consumer is
`login-consumer`, started as the image starts it (entry point, environment variables). Without a
consumer the check must fail: that is what makes `helm test` worth running.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.chart.conftest import CHART

pytestmark = pytest.mark.integration

SCRIPT = CHART / "files" / "pipeline_check.py"


def run_check(bootstrap: str, topics: dict[str, str], *args: str) -> tuple[int, dict[str, object]]:
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            f"--bootstrap={bootstrap}",
            f"--input-topic={topics['input']}",
            f"--output-topic={topics['output']}",
            f"--dlq-topic={topics['dlq']}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    lines = out.stdout.strip().splitlines()
    assert lines, out.stderr
    return out.returncode, json.loads(lines[-1])


@pytest.fixture
def topics(topic_factory: Callable[..., str]) -> dict[str, str]:
    return {
        "input": topic_factory("user-login", partitions=3),
        "output": topic_factory("processed-logins", partitions=3),
        "dlq": topic_factory("dlq"),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def consumer(kafka: str, topics: dict[str, str], group: str) -> Iterator[str]:
    """A running login-consumer; yields its /ready URL."""
    port = free_port()
    env = {
        **os.environ,
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": topics["input"],
        "OUTPUT_TOPIC": topics["output"],
        "DLQ_TOPIC": topics["dlq"],
        "GROUP_ID": group,
        "METRICS_PORT": str(port),
        "LOG_FORMAT": "json",
    }
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "login-consumer")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}/ready"
    finally:
        proc.terminate()
        try:
            _, stderr = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, stderr = proc.communicate()
    assert proc.returncode in (0, -15), stderr[-2000:]


def test_check_passes_through_a_running_consumer(
    kafka: str, topics: dict[str, str], group_factory: Callable[[str], str]
) -> None:
    with consumer(kafka, topics, group_factory("check")) as ready:
        code, summary = run_check(
            kafka, topics, "check", "--count=50", "--timeout=90", "--dlq", f"--ready-url={ready}"
        )
    assert code == 0, summary
    assert summary["result"] == "ok"
    assert summary["processed"] == 50
    assert summary["missing"] == 0
    assert summary["dlq"] == "untouched"


def test_check_fails_when_nothing_consumes(kafka: str, topics: dict[str, str]) -> None:
    code, summary = run_check(kafka, topics, "check", "--count=5", "--timeout=3", "--dlq")
    assert code == 1
    assert summary["result"] == "failed"
    assert summary["missing"] == 5
    assert summary["dlq"] == "missing"


def test_mark_produce_verify_in_two_halves(
    kafka: str, topics: dict[str, str], group_factory: Callable[[str], str]
) -> None:
    code, offsets = run_check(kafka, topics, "mark")
    assert code == 0
    assert set(offsets) == {"output", "dlq"}
    marker = "split-test"
    assert run_check(kafka, topics, "produce", f"--marker={marker}", "--count=30")[1]["sent"] == 30
    with consumer(kafka, topics, group_factory("check")):
        sent = run_check(kafka, topics, "produce", f"--marker={marker}", "--start=30", "--count=30")[1]
        assert sent["sent"] == 30
        code, summary = run_check(
            kafka, topics, "verify", f"--marker={marker}", "--count=60", f"--offsets={json.dumps(offsets)}"
        )
    assert code == 0, summary
    assert summary["processed"] == 60


def test_the_script_is_lint_clean() -> None:
    # charts/ is outside ruff's default scope (templates are not Python); the one script in it is not
    ruff = [sys.executable, "-m", "ruff"]
    check = subprocess.run([*ruff, "check", str(SCRIPT)], capture_output=True, text=True, check=False)
    assert check.returncode == 0, check.stdout
    fmt = subprocess.run(
        [*ruff, "format", "--check", str(SCRIPT)], capture_output=True, text=True, check=False
    )
    assert fmt.returncode == 0, fmt.stdout
