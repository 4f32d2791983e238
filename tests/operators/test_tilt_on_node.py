"""Tilt's node mode for real (docs/tilt.md): `make tilt-ci-node` runs the Tilt built here (`make tilt`)
against the node, the images built by the daemon-free builder through custom_build and imported into the
node's containerd; both services become Ready and the consumer processes events; then `tilt up` with a
live update: a file synced into the running consumers and the process restarted in place. At the end
`make tilt-down-node` removes Tilt's objects and, when a helm release of the chart was there before,
`make k8s-node-deploy` puts it back.

The node: the tier's (the `cluster` fixture: this clone's, brought up with the operators), or, when
another clone's node runs with the operators (one kubelet per machine, used by turns), that one through
its kubeconfig (/run/login-stream-node/owner.json names its folder) instead of skipping: Tilt needs only
the Kafka, its topics and the operators, which that node has once `make k8s-node-operators` ran there.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.operators.conftest import ROOT, Cluster, unavailable

pytestmark = pytest.mark.timeout(3600)
APP_NS = "login-stream"
SERVICES = ("producer", "consumer")
PROBE = ROOT / "libs" / "common" / "src" / "tilt_live_update_probe.txt"
REMOTE_SRC = "/app/libs/common/src"
OWNER = Path("/run/login-stream-node/owner.json")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make(cluster: Cluster, *args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args, f"NODE_KUBECONFIG={cluster.kubeconfig}"],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def tilt_binary() -> str:
    out = subprocess.run(
        ["bash", str(ROOT / "tools/tilt/build.sh")], capture_output=True, text=True, timeout=7200, check=False
    )
    assert out.returncode == 0, f"tools/tilt/build.sh failed:\n{out.stderr[-3000:]}"
    return out.stdout.strip()


def wait_for(what: str, check: Callable[[], bool], timeout: float, every: float = 3) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(every)


def another_clones_node() -> Path | None:
    """The admin kubeconfig of a node another clone runs (its kubelet alive), else None."""
    try:
        owner = json.loads(OWNER.read_text())
    except (OSError, ValueError):
        return None
    if Path(str(owner.get("root", ""))).resolve() == ROOT.resolve():
        return None
    pid = owner.get("kubelet_pid")
    kubeconfig = Path(str(owner.get("dir", ""))) / "api" / "kubeconfig"
    if not pid or not Path(f"/proc/{pid}").exists() or not kubeconfig.is_file():
        return None
    return kubeconfig


@pytest.fixture(scope="module")
def node(request: pytest.FixtureRequest) -> Cluster:
    kubeconfig = another_clones_node()
    if kubeconfig is None:
        cluster: Cluster = request.getfixturevalue("cluster")
        return cluster
    shared = Cluster(kubeconfig=kubeconfig)
    kafka = subprocess.run(
        ["kubectl", "-n", APP_NS, "wait", "kafka/login-stream", "--for=condition=Ready", "--timeout=60s"],
        env=shared.env(), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if kafka.returncode:
        unavailable(f"another clone's node runs without a Ready Kafka ({kafka.stderr.strip()[-300:]})")
    return shared


@dataclass(frozen=True)
class TiltCi:
    result: subprocess.CompletedProcess[str]
    seconds: float


@pytest.fixture(scope="module")
def tilt_ci(node: Cluster) -> Iterator[TiltCi]:
    tilt_binary()  # built (or found cached) before the clock starts
    release = subprocess.run(
        ["helm", "--kubeconfig", str(node.kubeconfig), "status", "login-stream", "-n", APP_NS],
        capture_output=True, text=True, timeout=120, check=False, env={**os.environ, "PATH": tools_path()},
    )  # fmt: skip
    started = time.monotonic()
    result = make(node, "tilt-ci-node", f"TILT_PORT={free_port()}")
    seconds = time.monotonic() - started
    print(f"make tilt-ci-node: {seconds:.0f}s, exit {result.returncode}")
    try:
        yield TiltCi(result, seconds)
    finally:
        down = make(node, "tilt-down-node", timeout=600)
        said = f"{down.stdout[-2000:]}\n{down.stderr[-2000:]}"
        assert down.returncode == 0, f"make tilt-down-node failed:\n{said}"
        if release.returncode == 0:  # the helm release Tilt took over: back as it was
            deploy = make(node, "k8s-node-deploy", timeout=900)
            assert deploy.returncode == 0, f"make k8s-node-deploy failed:\n{deploy.stderr[-3000:]}"


def tools_path() -> str:
    return f"{ROOT / '.cache' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


def deployments(node: Cluster) -> dict[str, Any]:
    items = node.get("deployments", "-n", APP_NS)["items"]
    return {d["metadata"]["name"]: d for d in items}


def consumer_pods(node: Cluster) -> list[dict[str, Any]]:
    selector = "app.kubernetes.io/instance=login-stream,app.kubernetes.io/component=consumer"
    pods = node.get("pods", "-n", APP_NS, "-l", selector)["items"]
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def ready_pod(pod: dict[str, Any]) -> bool:
    conditions = pod.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def processed(node: Cluster) -> float:
    total = 0.0
    for pod in consumer_pods(node):
        name = pod["metadata"]["name"]
        text = node.kubectl("get", "--raw", f"/api/v1/namespaces/{APP_NS}/pods/{name}:8000/proxy/metrics")
        found = re.findall(r"^login_consumer_events_processed_total (\S+)$", text, re.MULTILINE)
        total += sum(float(v) for v in found)
    return total


def test_tilt_ci_makes_both_services_ready_on_images_built_without_docker(
    node: Cluster, tilt_ci: TiltCi
) -> None:
    out = tilt_ci.result
    said = f"{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    assert out.returncode == 0, f"make tilt-ci-node failed:\n{said}"
    assert "SUCCESS. All workloads are healthy." in out.stdout + out.stderr, said
    # custom_build ran the daemon-free builder and the import, not Docker
    assert "login_images build --dockerfile services/Dockerfile --target dev" in out.stdout + out.stderr, said
    found = deployments(node)
    for service in SERVICES:
        deployment = found[f"login-stream-{service}"]
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        image = container["image"]
        assert re.fullmatch(rf"localhost/login-{service}:tilt-build-\d+", image), image
        assert container["command"][:2] == ["sh", "-c"], "the Tiltfile's restart loop"
        assert container["command"][-1] == f"login-{service}"
        assert container["imagePullPolicy"] == "IfNotPresent"
        status = deployment["status"]
        assert status.get("readyReplicas") == status.get("replicas") >= 1, status
        labels = deployment["metadata"]["labels"]
        assert labels.get("app.kubernetes.io/managed-by") == "tilt", labels


def test_the_consumer_processes_events_under_tilt(node: Cluster, tilt_ci: TiltCi) -> None:
    assert tilt_ci.result.returncode == 0
    first = processed(node)
    wait_for("the consumers' processed count to grow", lambda: processed(node) > first + 20, 180, 5)


def test_the_kubelets_sigterm_reaches_the_service_through_the_restart_loop(
    node: Cluster, tilt_ci: TiltCi
) -> None:
    """The container's command is the Tiltfile's shell loop: a deleted pod's consumer still closes cleanly
    (its `consumer.closed` line is written only on SIGTERM's path, never after the kubelet's SIGKILL)."""
    assert tilt_ci.result.returncode == 0
    pod = next(p for p in consumer_pods(node) if ready_pod(p))["metadata"]["name"]
    follow = subprocess.Popen(
        ["kubectl", "-n", APP_NS, "logs", "-f", pod], env=node.env(), stdout=subprocess.PIPE, text=True
    )
    try:
        wait_for(
            "the log to be followed",
            lambda: "consumer.running" in node.kubectl("-n", APP_NS, "logs", pod),
            60,
        )
        node.kubectl("-n", APP_NS, "delete", "pod", pod, "--wait=true", timeout=120)
        logged, _ = follow.communicate(timeout=60)
    finally:
        follow.kill()
    assert "consumer.closed" in logged, logged[-3000:]


def test_live_update_syncs_into_the_running_consumers_and_restarts_the_process(
    node: Cluster, tilt_ci: TiltCi
) -> None:
    assert tilt_ci.result.returncode == 0
    tilt, port = tilt_binary(), str(free_port())
    env = {**node.env(), "LOGIN_STREAM_CLUSTER": "node", "PATH": tools_path()}  # helm: make tools
    log = ROOT / ".cache" / "tilt-up-node.log"
    log.parent.mkdir(exist_ok=True)
    with log.open("w") as sink:
        up = subprocess.Popen(
            [tilt, "up", "--stream", "--port", port], cwd=ROOT, env=env, stdout=sink, stderr=sink
        )
    try:

        def tilt_cmd(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [tilt, *args, "--port", port],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )

        wait_for(
            "tilt up's API",
            lambda: tilt_cmd("get", "uiresource", "login-stream-consumer").returncode == 0,
            300,
        )
        for service in SERVICES:
            resource = f"uiresource/login-stream-{service}"
            wait = tilt_cmd("wait", "--for=condition=Ready", resource, "--timeout=900s", timeout=960)
            assert wait.returncode == 0, f"tilt wait {service}: {wait.stderr}\n{log.read_text()[-4000:]}"
        image = deployments(node)["login-stream-consumer"]["spec"]["template"]["spec"]["containers"][0][
            "image"
        ]

        def rolled_out() -> bool:
            pods = consumer_pods(node)
            return bool(pods) and all(
                ready_pod(p) and p["spec"]["containers"][0]["image"] == image for p in pods
            )

        wait_for(f"tilt up's rollout of {image}", rolled_out, 300)
        before = {p["metadata"]["name"]: p for p in consumer_pods(node)}

        def synced(expected: str) -> bool:
            remote = f"{REMOTE_SRC}/{PROBE.name}"
            for name in before:
                out = subprocess.run(
                    ["kubectl", "-n", APP_NS, "exec", name, "--", "sh", "-c",
                     f"if [ -e {remote} ]; then cat {remote}; else echo ABSENT; fi"],
                    env=node.env(), capture_output=True, text=True, timeout=60, check=False,
                )  # fmt: skip
                if out.returncode != 0 or out.stdout.strip() != expected:
                    return False
            return True

        assert synced("ABSENT"), "the probe file is in the image already"
        token = secrets.token_hex(8)
        PROBE.write_text(f"{token}\n")
        wait_for("the file synced into every consumer", lambda: synced(token), 180)
        wait_for(
            "the restart loop to restart each consumer",
            lambda: all(
                "live update: restarting login-consumer" in node.kubectl("-n", APP_NS, "logs", name)
                for name in before
            ),
            120,
        )
        # in place: the same pods, no container restart (the process was restarted inside it)
        after = {p["metadata"]["name"]: p for p in consumer_pods(node)}
        # (KEDA may add a consumer meanwhile: only the pods updated are compared)
        assert set(before) <= set(after), "live update replaced the pods instead of updating them"
        for name in before:
            restarts = [s["restartCount"] for s in after[name]["status"]["containerStatuses"]]
            was = [s["restartCount"] for s in before[name]["status"]["containerStatuses"]]
            assert restarts == was, f"{name}: the container restarted ({was} -> {restarts})"
        # a deleted file is deleted in the containers too
        PROBE.unlink()
        wait_for("the file removed from every consumer", lambda: synced("ABSENT"), 180)
        # and the restarted consumers still process
        first = processed(node)
        wait_for("processing after the restart", lambda: processed(node) > first + 20, 180, 5)
    finally:
        PROBE.unlink(missing_ok=True)
        up.terminate()
        try:
            up.wait(timeout=60)
        except subprocess.TimeoutExpired:
            up.kill()
        print(f"tilt up log: {log} ({os.path.getsize(log)} bytes)")


def test_the_probe_file_is_not_left_behind() -> None:
    assert not Path(PROBE).exists()
