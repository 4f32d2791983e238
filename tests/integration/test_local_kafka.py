"""login_devtools/local_kafka.py: idempotent start, status, and clear errors for missing tools or bad
settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "login_devtools.local_kafka"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SCRIPT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=180,
    )


@pytest.mark.integration
def test_second_up_is_a_no_op_and_status_reports_the_log(kafka: str) -> None:
    port = kafka.rsplit(":", 1)[1]
    env = {"KAFKA_PORT": port, "BOOTSTRAP_SERVERS": ""}
    first = run("up", env=env)
    assert first.returncode == 0, first.stderr
    second = run("up", env=env)
    assert second.returncode == 0
    assert "already running" in second.stdout
    status = run("status", env=env)
    assert status.returncode == 0
    assert f"127.0.0.1:{port}" in status.stdout
    assert "running" in status.stdout
    assert "log:" in status.stdout


def test_named_broker_that_answers_is_used(kafka: str) -> None:
    out = run("up", env={"BOOTSTRAP_SERVERS": kafka})
    assert out.returncode == 0
    assert f"BOOTSTRAP_SERVERS={kafka}" in out.stdout


def _free_port() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _bare_env(tmp_path: Path) -> dict[str, str]:
    """An environment whose PATH is an empty folder (no java, mvn, docker) and whose port is free."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    return {
        "PATH": str(bindir),
        "KAFKA_PORT": _free_port(),
        "BOOTSTRAP_SERVERS": "",
        "KAFKA_HOME": "",
        "JAVA_HOME": "",
        "KAFKA_CACHE_DIR": str(tmp_path / "cache"),
    }


def test_missing_java_is_named(tmp_path: Path) -> None:
    out = run("up", env=_bare_env(tmp_path))
    assert out.returncode == 1
    assert "`java` is not on PATH" in out.stderr


def test_missing_maven_is_named(tmp_path: Path) -> None:
    env = _bare_env(tmp_path)
    java = subprocess.run(["which", "java"], capture_output=True, text=True, check=False).stdout.strip()
    assert java, "no java on PATH: `make setup` installs it"
    (Path(env["PATH"]) / "java").symlink_to(java)
    out = run("up", env=env)
    assert out.returncode == 1
    assert "`mvn` (Apache Maven) is not on PATH" in out.stderr


def test_bad_kafka_home_and_port_are_named(tmp_path: Path) -> None:
    out = run("up", env={"KAFKA_PORT": "ninety", "BOOTSTRAP_SERVERS": ""})
    assert out.returncode == 1
    assert "KAFKA_PORT='ninety'" in out.stderr
    out = run(
        "up",
        env={"KAFKA_PORT": _free_port(), "BOOTSTRAP_SERVERS": "", "KAFKA_HOME": str(tmp_path)},
    )
    assert out.returncode == 1
    assert "has no libs/ folder" in out.stderr


def test_status_reports_the_metrics_endpoint_and_a_bad_metrics_port_is_named(kafka: str) -> None:
    port = kafka.rsplit(":", 1)[1]
    out = run("status", env={"KAFKA_PORT": port, "BOOTSTRAP_SERVERS": ""})
    assert f"metrics:   http://127.0.0.1:{int(port) + 4}/metrics" in out.stdout
    out = run("status", env={"KAFKA_PORT": port, "KAFKA_METRICS_PORT": "nine", "BOOTSTRAP_SERVERS": ""})
    assert out.returncode == 1
    assert "KAFKA_METRICS_PORT='nine'" in out.stderr
