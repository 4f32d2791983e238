"""The Makefile's families: `make help` groups local and cluster targets apart, and `make build` builds with
Docker when its daemon answers and with the daemon-free builder (tools/images) when none does."""

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


def recorder(path: Path, log: Path, exit_code: int = 0) -> str:
    """An executable that appends its arguments to ``log`` and exits with ``exit_code``."""
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {log}\nexit {exit_code}\n')
    path.chmod(0o755)
    return str(path)


def test_build_without_a_docker_daemon_uses_the_daemon_free_builder(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    docker = tmp_path / "docker"
    docker.write_text("#!/bin/sh\necho 'Cannot connect to the Docker daemon' >&2\nexit 1\n")
    docker.chmod(0o755)
    builder = recorder(tmp_path / "builder", log)
    out = make("build", f"DOCKER={docker}", f"IMAGE_BUILDER={builder}", "IMAGE_TAG=t", "IMAGES_DIR=out")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no Docker daemon answers" in out.stdout
    assert "daemon-free builder" in out.stdout
    calls = log.read_text().splitlines()
    for service in ("producer", "consumer"):
        expected = (
            "builder build --dockerfile services/Dockerfile "
            f"--target {service} --build-arg SERVICE={service} "
            f"--name localhost/login-{service}:t --output out/login-{service}.tar"
        )
        assert expected in calls
    assert "docker build" not in out.stdout


def test_a_failing_daemon_free_build_fails_make_build(tmp_path: Path) -> None:
    builder = recorder(tmp_path / "builder", tmp_path / "calls.log", exit_code=2)
    out = make("build", "DOCKER=/bin/false", f"IMAGE_BUILDER={builder}")
    assert out.returncode != 0
    assert len((tmp_path / "calls.log").read_text().splitlines()) == 1, "stops at the first failure"


def test_build_with_a_docker_daemon_uses_docker(tmp_path: Path) -> None:
    log = tmp_path / "calls.log"
    docker = recorder(tmp_path / "docker", log)
    builder = recorder(tmp_path / "builder", log)
    out = make("build", f"DOCKER={docker}", f"IMAGE_BUILDER={builder}")
    assert out.returncode == 0, out.stdout + out.stderr
    calls = log.read_text().splitlines()
    assert calls[0] == "docker info"
    assert any(c.startswith("docker build") and "--target producer" in c for c in calls)
    assert any(c.startswith("docker build") and "--target consumer" in c for c in calls)
    assert not any(c.startswith("builder") for c in calls)


def test_images_import_names_the_containerd_socket(tmp_path: Path) -> None:
    """`make images-import`: build (cached), then import both archives into CONTAINERD_ADDRESS; the default
    is the real node's socket (login_devtools/k8s_node.py's RUNTIME folder)."""
    log = tmp_path / "calls.log"
    builder = recorder(tmp_path / "builder", log)
    out = make("images-import", f"IMAGE_BUILDER={builder}", "IMAGES_DIR=out")
    assert out.returncode == 0, out.stdout + out.stderr
    calls = log.read_text().splitlines()
    assert calls[-1] == (
        "builder import --address /run/login-stream-node/containerd.sock --namespace k8s.io "
        "out/login-producer.tar out/login-consumer.tar"
    )
    out = make(
        "images-import", f"IMAGE_BUILDER={builder}", "CONTAINERD_ADDRESS=/run/x.sock", "IMAGES_DIR=out"
    )
    assert log.read_text().splitlines()[-1].startswith("builder import --address /run/x.sock ")


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
