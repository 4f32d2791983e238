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
    cluster = next(v for k, v in groups.items() if k.startswith("Kubernetes (kind cluster"))
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
    assert "Other" not in groups, (
        f"targets {groups.get('Other')} come before any `##@ Section` line of their file: "
        "start each Makefile/mk file with one, so `make help` shows their family"
    )


def test_build_without_a_docker_daemon_says_why(tmp_path: Path) -> None:
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    fake.chmod(0o755)
    out = make("build", f"DOCKER={fake}")
    assert out.returncode != 0
    assert "no Docker daemon answers" in out.stderr
    assert "cannot be built here" in out.stderr
    assert "docker build" not in out.stdout


def test_cluster_uses_installed_tools_and_needs_no_go(tmp_path: Path) -> None:
    """A laptop with Docker and brew/apt kind, helm and kubectl, and no Go: `make cluster` uses them."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    calls = tmp_path / "calls.log"
    versions = {
        "helm": "v3.17.3",
        "kind": "kind v0.29.0 go1.24.2 linux/amd64",
        "kubectl": "Client Version: v1.33.1",
    }
    for name in ("helm", "kind", "kubectl", "docker"):
        stub = bindir / name
        stub.write_text(f"#!/bin/sh\necho \"{name} $*\" >> {calls}\necho '{versions.get(name, 'ok')}'\n")
        stub.chmod(0o755)
    env = {"PATH": f"{bindir}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(tmp_path)}
    out = make("cluster", f"TOOLS_BIN={tmp_path / 'no-tools-bin'}", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    for name in ("helm", "kind", "kubectl"):
        assert f"{name}: using {bindir / name} " in out.stdout, out.stdout
        assert "(on PATH; supported" in out.stdout
    assert "kubeconform" not in out.stdout + out.stderr
    assert "go install" not in out.stdout + out.stderr
    log = calls.read_text()
    assert "kind create cluster --name login-stream --config k8s/kind-config.yaml" in log
    assert "helm --kube-context kind-login-stream upgrade --install strimzi-cluster-operator" in log
