"""Fixtures of the operators tier: Strimzi, prometheus-operator + Prometheus and KEDA, built here
(`make operators-build`), reconciling on the local real node (login_devtools/k8s_node.py), the chart on top.

The session brings the node up unless one runs already, then runs, through make as a person would:
`operators-images-import` (the operators' images packed by the daemon-free builder and imported),
`images-import` (the service images), `k8s-node-operators` (the three charts with
k8s/values/local-node/, then the Kafka CR, node pools, topics and PodMonitors of k8s/ until Ready) and
`k8s-node-deploy` (the chart against that Kafka, KEDA on). What it started it stops at the end
(K8S_NODE_KEEP=1 keeps it). A machine that cannot host it (not root, packages missing, the node's
binaries or the operators not built: `make operators-build` takes hours on two shared cores) skips the
tier naming the reason; under CI (CI=true) it fails instead. `make test` does not collect this tier
(pyproject's norecursedirs): `make test-operators` runs it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.operators.parts import missing_parts

ROOT = Path(__file__).resolve().parents[2]
NODE_SCRIPT = ("-m", "login_devtools.k8s_node")
SETUP_TARGETS = ("operators-images-import", "images-import", "k8s-node-operators", "k8s-node-deploy")


def unavailable(reason: str) -> None:
    """Skip outside CI, fail under it: CI's machine is one that must host the tier."""
    if os.environ.get("CI"):
        pytest.fail(f"operators tier cannot run: {reason}")
    pytest.skip(f"operators tier: {reason}")


def _run(*cmd: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False)


@dataclass(frozen=True)
class Cluster:
    kubeconfig: Path

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=self.env(), timeout=timeout, check=False
        )
        if out.returncode:
            pytest.fail(f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-1500:]}")
        return out.stdout

    def get(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json"))


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    if os.geteuid() != 0:
        unavailable("needs root (a kubelet manages cgroups, mounts, netns and iptables)")
    if missing := [c for c in ("containerd", "runc", "ctr", "kubectl", "debootstrap") if not shutil.which(c)]:
        unavailable(f"missing commands {missing}: `make setup` installs them (apt-get)")
    if missing := missing_parts():
        unavailable(f"the operators are not built ({', '.join(missing)}): run `make operators-build`")
    if _run(sys.executable, *NODE_SCRIPT, "built", timeout=120).returncode:
        unavailable("the node's binaries are not built yet: `make k8s-node-up` builds them")
    started = _run(sys.executable, *NODE_SCRIPT, "status", timeout=60).returncode != 0
    if started:
        up = _run(sys.executable, *NODE_SCRIPT, "up")
        if "another node runs on this machine" in up.stderr:
            unavailable(up.stderr.strip().splitlines()[-1])  # one kubelet per machine: take turns
        if up.returncode:
            pytest.fail(f"k8s_node.py up failed:\n{up.stdout[-2000:]}\n{up.stderr[-3000:]}")
    kubeconfig = Path(_run(sys.executable, *NODE_SCRIPT, "kubeconfig").stdout.strip())
    try:
        setup = _run("make", "--no-print-directory", *SETUP_TARGETS, timeout=3600)
        if setup.returncode:
            said = f"{setup.stdout[-3000:]}\n{setup.stderr[-3000:]}"
            pytest.fail(f"make {' '.join(SETUP_TARGETS)} failed:\n{said}")
        yield Cluster(kubeconfig=kubeconfig)
    finally:
        if started and not os.environ.get("K8S_NODE_KEEP"):
            _run(sys.executable, *NODE_SCRIPT, "down", timeout=300)
