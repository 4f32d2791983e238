"""The operators reconcile for real on the local node: Strimzi's cluster operator (built from its 1.2.0
source) runs the project's Kafka CR and node pools as KRaft pods of the image built here, its entity
operators make KafkaTopics and KafkaUsers Ready with their Secrets; prometheus-operator runs Prometheus;
KEDA reconciles the chart's ScaledObject; and `make e2e` (tests/e2e, as on kind) passes against all of it
(`make e2e-node`: the node's kubeconfig and context, nothing else changed).
"""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from tests.operators.conftest import ROOT, Cluster

pytestmark = pytest.mark.timeout(3600)
APP_NS, MONITORING_NS, KEDA_NS, STRIMZI_NS = "login-stream", "monitoring", "keda", "strimzi"


def ready(obj: dict[str, Any]) -> bool:
    conditions = obj.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def pod_images(cluster: Cluster, namespace: str, selector: str) -> dict[str, set[str]]:
    pods = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
    return {p["metadata"]["name"]: {c["image"] for c in p["spec"]["containers"]} for p in pods}


def test_kafka_runs_kraft_in_the_image_built_here(cluster: Cluster) -> None:
    kafka = cluster.get("kafka", "login-stream", "-n", APP_NS)
    assert ready(kafka), kafka.get("status")
    pools = cluster.get("kafkanodepools", "-n", APP_NS)["items"]
    assert {p["metadata"]["name"] for p in pools} == {"dual-role"}
    assert sorted(pools[0]["status"]["roles"]) == ["broker", "controller"]
    # the pool's own selector of its pods (the entity operator carries strimzi.io/kind=Kafka too)
    images = pod_images(cluster, APP_NS, pools[0]["status"]["labelSelector"])
    assert images, "no Kafka pod"
    assert all(i == {"localhost/strimzi/kafka:1.2.0-kafka-4.3.1"} for i in images.values()), images
    operator = pod_images(cluster, STRIMZI_NS, "name=strimzi-cluster-operator")
    assert operator, "no cluster operator pod"
    assert all(i == {"localhost/strimzi/operator:1.2.0"} for i in operator.values()), operator


def test_entity_operators_run_and_topics_and_users_are_ready(cluster: Cluster) -> None:
    selector = "strimzi.io/kind=Kafka,strimzi.io/name=login-stream-entity-operator"
    pods = cluster.get("pods", "-n", APP_NS, "-l", selector)["items"]
    statuses = {s["name"]: s["ready"] for p in pods for s in p["status"].get("containerStatuses", [])}
    assert statuses == {"topic-operator": True, "user-operator": True}, statuses
    topics = cluster.get("kafkatopics", "-n", APP_NS)["items"]
    assert topics, "no KafkaTopic"
    assert all(ready(t) for t in topics), [t["metadata"]["name"] for t in topics if not ready(t)]
    users = cluster.get("kafkausers", "-n", APP_NS)["items"]
    names = {u["metadata"]["name"] for u in users}
    assert {"login-stream-producer", "login-stream-consumer"} <= names, names
    assert all(ready(u) for u in users), [u["metadata"]["name"] for u in users if not ready(u)]
    for user in users:
        secret = cluster.get("secret", user["status"]["secret"], "-n", APP_NS)
        assert "password" in secret["data"] or "user.crt" in secret["data"], user["metadata"]["name"]


def test_prometheus_and_keda_run_the_images_built_here(cluster: Cluster) -> None:
    prometheus = pod_images(cluster, MONITORING_NS, "app.kubernetes.io/name=prometheus")
    assert prometheus, "no Prometheus pod"
    for images in prometheus.values():
        assert "localhost/prometheus/prometheus:v3.13.2" in images, images
        assert "localhost/prometheus-operator/prometheus-config-reloader:v0.93.0" in images, images
    keda = pod_images(cluster, KEDA_NS, "app.kubernetes.io/part-of=keda-operator")
    assert {i for s in keda.values() for i in s} == {
        "localhost/kedacore/keda:2.20.2",
        "localhost/kedacore/keda-metrics-apiserver:2.20.2",
        "localhost/kedacore/keda-admission-webhooks:2.20.2",
    }, keda
    so = cluster.get("scaledobject", "login-stream-consumer", "-n", APP_NS)
    assert ready(so), so.get("status")


def test_make_e2e_passes_on_the_node(cluster: Cluster) -> None:
    """tests/e2e, unchanged, through `make e2e-node` (prints its summary)."""
    out = subprocess.run(
        ["make", "--no-print-directory", "e2e-node", "PYTEST_ARGS=-p no:cacheprovider -s"],
        cwd=ROOT, capture_output=True, text=True, timeout=3500, check=False,
    )  # fmt: skip
    summary = out.stdout.strip().splitlines()[-1:] or [""]
    print(f"make e2e-node: {summary[0]}")
    assert out.returncode == 0, f"make e2e-node failed:\n{out.stdout[-5000:]}\n{out.stderr[-2000:]}"
    assert re.search(r"\d+ passed", summary[0]), summary
    assert "failed" not in summary[0], summary
