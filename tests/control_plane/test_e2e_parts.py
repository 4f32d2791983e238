"""The parts of tests/e2e (`make e2e`) that need only the Kubernetes API, run against the local control plane
before a user runs them on kind: the cluster discovery of its session start, its waits and object
lookups, the KafkaTopic check and the Deployment availability checks, and its scaling helpers.

The fake nodes run no containers and no Strimzi operator runs, so the fixture plays Strimzi's one part
that e2e reads: the Kafka resource's Ready condition (written to its status subresource, as the operator
does). Exec into pods and Prometheus (events through the pipeline, targets, rules) need a real cluster.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.control_plane.conftest import ROOT, Cluster, ControlPlane, wait_for

pytestmark = pytest.mark.timeout(300)

API_ONLY = ["test_kafka_is_ready", "test_deployment_is_available"]


@pytest.fixture(scope="module")
def kafka_ready(api: Any, cluster: Cluster) -> dict[str, Any]:
    from kubernetes import client

    kafka = next(o for o in cluster.objects if o["kind"] == "Kafka")
    name, ns = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = {"status": {"conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": now}]}}
    client.CustomObjectsApi(api).patch_namespaced_custom_object_status(
        "kafka.strimzi.io", "v1", ns, "kafkas", name, status
    )
    return kafka


def test_make_e2e_api_checks_pass_against_the_control_plane(
    control_plane: ControlPlane, kafka_ready: dict[str, Any], deployed: list[dict[str, Any]]
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("E2E_", "KUBERNETES_", "PYTEST_"))}
    env |= {
        "KUBECONFIG": str(control_plane.kubeconfig),
        "E2E_NAMESPACE": "login-stream",
        "E2E_RELEASE": "login-stream",
        "E2E_KAFKA": kafka_ready["metadata"]["name"],
    }
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "tests/e2e",
            "-p",
            "no:cacheprovider",
            "-q",
            "-k",
            " or ".join(API_ONLY),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    text = out.stdout + out.stderr
    assert out.returncode == 0, text[-4000:]
    assert "e2e: cluster at https://127.0.0.1:" in text  # its discovery found this control plane
    assert "3 passed" in text, text[-2000:]


def test_e2e_scaling_helpers_scale_the_consumer(api: Any, deployed: list[dict[str, Any]]) -> None:
    from tests.e2e.conftest import Settings
    from tests.e2e.test_pipeline import available, consumer_env, deployment, running_pod, scale

    s = Settings(namespace="login-stream", release="login-stream")
    original = deployment(api, s, "consumer").spec.replicas
    try:
        scale(api, s, "consumer", 3)
        wait_for("consumer at 3 replicas", lambda: available(api, s, "consumer", 3), 90)
        scale(api, s, "consumer", 1)
        wait_for("consumer at 1 replica", lambda: available(api, s, "consumer", 1), 90)
    finally:
        scale(api, s, "consumer", original)
    wait_for("consumer back", lambda: available(api, s, "consumer", original), 90)
    assert running_pod(api, s, "producer").startswith("login-stream-producer-")
    env = consumer_env(api, s)
    assert {"INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "BOOTSTRAP_SERVERS"} <= set(env)
