"""What the README's cluster commands must do here: the one place to change when a cluster exists.

Today no Docker daemon and no Kubernetes cluster answer on the machines the tier runs on, so each command
must stop with the refusal the README documents (section "Kubernetes (where Docker runs)"), exit non-zero
and do nothing else. ``available()`` decides which expectation applies: when a cluster answers at
KUBE_CONTEXT (and, for the commands that create one, a Docker daemon answers), the ``works`` markers are
asserted instead. To point the tier at another cluster (the local real node), set KUBE_CONTEXT and adjust
the ``works`` markers here.

``make build`` is here too: with a Docker daemon it runs ``docker build``, without one it builds OCI
archives with the daemon-free builder (tools/images); ``BUILD_*`` below say what each prints.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

KUBE_CONTEXT = os.environ.get("KUBE_CONTEXT", "kind-login-stream")
NO_DOCKER = "no Docker daemon answers (`docker info` fails): kind runs its node in a container"
NO_CLUSTER = (
    f"no Kubernetes cluster answers at context {KUBE_CONTEXT}: `make cluster` creates the kind cluster"
)
NO_E2E_CLUSTER = "make e2e needs a reachable Kubernetes cluster and found none"


@dataclass(frozen=True)
class Expect:
    """What a command prints (stdout + stderr) when it cannot work here, and when it can."""

    needs_docker: bool  # it creates the cluster: needs a Docker daemon, not a cluster
    refusal: tuple[str, ...]
    works: tuple[str, ...]
    timeout: float = 900.0  # `make tools cluster` may go-install kind first


# command, exactly as README.md shows it -> what it must do
CLUSTER: dict[str, Expect] = {
    "make tools cluster": Expect(True, ("make tools cluster: " + NO_DOCKER,), ("== cluster ready",)),
    "make cluster": Expect(True, ("make cluster: " + NO_DOCKER,), ("== cluster ready",)),
    "make deploy": Expect(False, ("make deploy: " + NO_CLUSTER,), ("STATUS: deployed",)),
    "make grafana": Expect(False, ("make grafana: " + NO_CLUSTER,), ("Grafana: http://localhost:3001",)),
    "make e2e": Expect(False, (NO_E2E_CLUSTER, "make cluster deploy"), (" passed",)),
    "make up": Expect(True, ("make up: " + NO_DOCKER,), ("Tilt",)),
    "make k8s-health": Expect(False, ("make k8s-health: " + NO_CLUSTER,), ("/ready: ",)),
    "make k8s-logs": Expect(False, ("make k8s-logs: " + NO_CLUSTER,), ("login-stream-",)),
    "make k8s-monitor": Expect(
        False, ("make k8s-monitor: " + NO_CLUSTER,), ("Kafdrop: http://localhost:9001",)
    ),
    "make k8s-stop": Expect(False, ("make k8s-stop: " + NO_CLUSTER,), ()),
    "make k8s-clean": Expect(True, ("make k8s-clean: " + NO_DOCKER,), ("Deleting cluster",)),
}

# `make build` (README: "the two images: Docker if it answers, else OCI archives, no daemon")
BUILD_WITHOUT_DOCKER = (
    "make build: no Docker daemon answers (`docker info` fails): building with the daemon-free builder",
)
BUILD_ARCHIVES = (".cache/images/login-producer.tar", ".cache/images/login-consumer.tar")
BUILD_WITH_DOCKER = ("login-producer:dev", "login-consumer:dev")


def docker_answers() -> bool:
    docker = shutil.which(os.environ.get("DOCKER", "docker"))
    if docker is None:
        return False
    done = subprocess.run([docker, "info"], capture_output=True, timeout=30, check=False)
    return done.returncode == 0


def cluster_answers() -> bool:
    kubectl = shutil.which(os.environ.get("KUBECTL", "kubectl"))
    if kubectl is None:
        return False
    done = subprocess.run(
        [kubectl, "--context", KUBE_CONTEXT, "version", "--request-timeout=5s"],
        capture_output=True,
        timeout=30,
        check=False,
    )
    return done.returncode == 0


def available(expect: Expect) -> bool:
    """True when the command can do its work here (then ``works`` applies, else ``refusal``)."""
    return docker_answers() if expect.needs_docker else cluster_answers()
