"""The Makefile's families: `make help` groups local and cluster targets apart, and `make build` says why
it cannot build images when no Docker daemon answers."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        check=False,
        timeout=60,
    )


def sections() -> dict[str, list[str]]:
    out = make("help")
    assert out.returncode == 0, out.stderr
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout)
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = line
            found[current] = []
        elif line.strip():
            found[current].append(line.split()[0])
    return found


def test_help_groups_the_local_and_the_cluster_families() -> None:
    groups = sections()
    local = next(v for k, v in groups.items() if k.startswith("Local pipeline"))
    cluster = next(v for k, v in groups.items() if k.startswith("Kubernetes"))
    setup = next(v for k, v in groups.items() if k.startswith("Set-up and tests"))
    for target in ("run", "stop", "logs", "health", "monitor", "watch", "demo", "build", "clean"):
        assert target in local, target
    k8s = ("cluster", "deploy", "e2e", "up", "grafana", "tools", "k8s-stop", "k8s-logs", "k8s-monitor")
    for target in k8s:
        assert target in cluster, target
    for target in ("init", "setup", "test", "lint"):
        assert target in setup, target
    every = [t for targets in groups.values() for t in targets]
    assert len(every) == len(set(every)), "a target is listed twice"
    assert "Other" not in groups  # every mk file says which family its targets belong to


def test_build_without_a_docker_daemon_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = make("build", f"DOCKER={fake}")
    assert out.returncode != 0
    assert "no Docker daemon answers" in out.stderr
    assert "cannot be built here" in out.stderr
    assert "docker build" not in out.stdout
