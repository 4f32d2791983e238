"""Fixtures of the real-node tier: a kubelet on this machine (login_devtools/k8s_node.py), the chart's pods
in it.

The session brings the node up unless one already runs (`make k8s-node-up`), starts the broker the pods
reach (on the node's bridge address, `make k8s-node-kafka`), builds the two service images with the
project's daemon-free builder and imports them into the node's containerd. What it started it stops at
the end. A machine that cannot host a node (not root, packages missing, binaries not built) skips the tier
naming the reason — under CI (CI=true) it fails instead: nothing is skipped silently there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "login-stream"
NODE_VALUES = ROOT / "k8s" / "values" / "real-node.yaml"
NODE_SCRIPT = "login_devtools.k8s_node"
KAFKA_SCRIPT = "login_devtools.local_kafka"
NODE_KAFKA_HOST = os.environ.get("NODE_KAFKA_HOST", "10.250.0.1")
NODE_KAFKA_PORT = os.environ.get("NODE_KAFKA_PORT", "9292")
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


def unavailable(reason: str) -> None:
    """Skip outside CI, fail under it: CI's machine is one that must host the node."""
    if os.environ.get("CI"):
        pytest.fail(f"real-node tier cannot run: {reason}")
    pytest.skip(f"real-node tier: {reason}")


@dataclass(frozen=True)
class Node:
    kubeconfig: Path
    bootstrap: str  # the broker the pods use, reachable from this host too

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def kubectl(self, *args: str, check: bool = True, timeout: float = 120, stdin: str | None = None) -> str:
        out = subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=self.env(), timeout=timeout,
            input=stdin, check=False,
        )  # fmt: skip
        if check and out.returncode:
            pytest.fail(f"kubectl {' '.join(args)} failed ({out.returncode}): {out.stderr.strip()[-1500:]}")
        return out.stdout

    def kubectl_json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    @staticmethod
    def helm_binary() -> str:
        helm = shutil.which("helm", path=f"{ROOT / '.cache' / 'bin'}:{os.environ.get('PATH', '')}")
        assert helm, "helm not found (make setup provides it)"
        return helm

    def helm(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [self.helm_binary(), *args],
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if check and out.returncode:
            said = (out.stderr or out.stdout).strip()[-2000:]
            pytest.fail(f"helm {' '.join(args)} failed ({out.returncode}): {said}")
        return out


def _script(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 900
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, **(env or {})}, check=False,
    )  # fmt: skip


def _can_host() -> str | None:
    if os.geteuid() != 0:
        return "needs root (a kubelet manages cgroups, mounts, netns and iptables)"
    missing = [
        c for c in ("containerd", "runc", "ctr", "iptables", "conntrack", "kubectl") if not shutil.which(c)
    ]
    if missing:
        return f"missing commands {missing}: `make setup` installs them (apt-get)"
    return None


@pytest.fixture(scope="session")
def node() -> Iterator[Node]:
    if problem := _can_host():
        unavailable(problem)
    if _script(NODE_SCRIPT, "built", timeout=120).returncode:
        # like the control-plane tier: `make test` gave the first build K8S_BUILD_BUDGET seconds
        pytest.skip("real-node tier: the node's binaries are not built yet: `make k8s-node-up` builds them")
    status = _script(NODE_SCRIPT, "status", timeout=60)
    started = status.returncode != 0
    if started:
        up = _script(NODE_SCRIPT, "up")
        if "another node runs on this machine" in up.stderr:
            unavailable(up.stderr.strip().splitlines()[-1])  # one kubelet per machine: take turns
        if up.returncode:
            pytest.fail(f"k8s_node.py up failed:\n{up.stdout[-2000:]}\n{up.stderr[-3000:]}")
    kubeconfig = Path(_script(NODE_SCRIPT, "kubeconfig").stdout.strip())
    kafka_env = {
        "KAFKA_HOST": NODE_KAFKA_HOST,
        "KAFKA_PORT": NODE_KAFKA_PORT,
        "BOOTSTRAP_SERVERS": f"{NODE_KAFKA_HOST}:{NODE_KAFKA_PORT}",
        "KAFKA_SECURITY": "",
    }
    kafka = _script(KAFKA_SCRIPT, "up", env=kafka_env)
    if kafka.returncode:
        pytest.fail(f"the node's broker did not start:\n{kafka.stdout[-1500:]}\n{kafka.stderr[-1500:]}")
    try:
        yield Node(kubeconfig=kubeconfig, bootstrap=f"{NODE_KAFKA_HOST}:{NODE_KAFKA_PORT}")
    finally:
        if started and not os.environ.get("K8S_NODE_KEEP"):
            _script(KAFKA_SCRIPT, "down", env=kafka_env)
            _script(NODE_SCRIPT, "down", timeout=300)


@pytest.fixture(scope="session")
def images(node: Node) -> dict[str, str]:
    """Both service images, built by the daemon-free builder and imported into the node."""
    runtime = os.environ.get("K8S_NODE_RUNTIME", "/run/login-stream-node")
    out = subprocess.run(
        ["make", "--no-print-directory", "images-oci", "images-import",
         f"CONTAINERD_ADDRESS={runtime}/containerd.sock"],
        cwd=ROOT, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if out.returncode:
        pytest.fail(f"building or importing the images failed:\n{out.stdout[-2500:]}\n{out.stderr[-2500:]}")
    return {"output": out.stdout}


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    node: Node

    def pods(self, component: str) -> list[dict[str, Any]]:
        selector = f"app.kubernetes.io/instance={self.name},app.kubernetes.io/component={component}"
        items: list[dict[str, Any]] = self.node.kubectl_json(
            "-n", self.namespace, "get", "pods", "-l", selector
        )["items"]
        return [p for p in items if not p["metadata"].get("deletionTimestamp")]

    def ready_pods(self, component: str) -> list[str]:
        names = []
        for pod in self.pods(component):
            conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
            if pod["status"].get("phase") == "Running" and conditions.get("Ready") == "True":
                names.append(pod["metadata"]["name"])
        return names

    def exec(self, pod: str, *command: str, timeout: float = 60) -> str:
        return self.node.kubectl("-n", self.namespace, "exec", pod, "--", *command, timeout=timeout)


def install_args(release: str, namespace: str, *extra: str) -> list[str]:
    return [
        "upgrade", "--install", release, str(CHART), "--namespace", namespace,
        "--values", str(CHART / "ci" / "default-values.yaml"), "--values", str(NODE_VALUES),
        "--wait", "--timeout", "5m", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def release(node: Node, images: dict[str, str]) -> Iterator[Release]:
    """The chart installed with its ci values and the node's overlay, in a namespace enforcing
    PodSecurity `restricted`; topic names of its own, so that modules do not see each other's events."""
    suffix = uuid.uuid4().hex[:6]
    namespace = f"rn-{suffix}"
    node.kubectl("create", "namespace", namespace)
    node.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    rel = Release(name="login-stream", namespace=namespace, node=node)
    topics = (
        f"kafka.topics.input=user-login-{suffix}",
        f"kafka.topics.output=processed-logins-{suffix}",
        f"kafka.topics.dlq=user-login-dlq-{suffix}",
        f"consumer.groupId=login-consumer-{suffix}",  # its own repartition and state topics too
    )
    _create_topics(node.bootstrap, [t.split("=", 1)[1] for t in topics if t.startswith("kafka.")])
    node.helm(*install_args(rel.name, namespace, *(a for t in topics for a in ("--set", t))))
    try:
        yield rel
    finally:
        node.helm("uninstall", rel.name, "--namespace", namespace, "--wait", check=False)
        node.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def _create_topics(bootstrap: str, names: list[str], partitions: int = 6) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics(
        [NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names]
    )
    for future in futures.values():
        future.result(timeout=30)
