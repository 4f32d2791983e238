"""k8s/ as `make cluster` and `make monitor` apply it, against the real API: the CRDs' server-side schemas
and CEL rules accept the Strimzi resources, and Kafdrop rolls out on the fake nodes, admitted under the
restricted Pod Security Standard, with readiness and liveness probes."""

from __future__ import annotations

from typing import Any

import pytest

from tests.control_plane.conftest import Cluster, apply, manifests, wait_for

pytestmark = pytest.mark.timeout(300)

STRIMZI_KINDS = ("Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser")


def test_every_crd_is_established(cluster: Cluster, api: Any) -> None:
    from kubernetes import client

    served = {c.metadata.name for c in client.ApiextensionsV1Api(api).list_custom_resource_definition().items}
    wanted = {crd["metadata"]["name"] for crd in cluster.crds}
    assert wanted <= served
    groups = {crd["spec"]["group"] for crd in cluster.crds}
    assert {"kafka.strimzi.io", "monitoring.coreos.com", "keda.sh"} <= groups


def test_the_strimzi_resources_are_stored_as_applied(cluster: Cluster, dynamic: Any) -> None:
    applied = [o for o in cluster.objects if o["kind"] in STRIMZI_KINDS]
    kinds = {o["kind"] for o in applied}
    assert {"Kafka", "KafkaNodePool", "KafkaTopic"} <= kinds, kinds
    for obj in applied:
        resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
        stored = resource.get(name=obj["metadata"]["name"], namespace=obj["metadata"]["namespace"]).to_dict()
        # the API server kept the spec (no field pruned as unknown by the CRD's structural schema)
        assert _subset(obj["spec"], stored["spec"]), (
            f"{obj['kind']} {obj['metadata']['name']}: {stored['spec']}"
        )
        managers = {m["manager"] for m in stored["metadata"]["managedFields"]}
        assert "login-stream-tests" in managers


def test_applying_again_changes_nothing(cluster: Cluster, dynamic: Any) -> None:
    for obj in cluster.objects:
        apply(dynamic, obj)  # the first re-apply may still move field ownership (before-first-apply)
        before = _resource_version(dynamic, obj)
        apply(dynamic, obj)
        assert _resource_version(dynamic, obj) == before, f"{obj['kind']} {obj['metadata']['name']} changed"


def test_the_crds_reject_an_invalid_kafka_topic(cluster: Cluster, dynamic: Any) -> None:
    from kubernetes.client.rest import ApiException

    topic = next(o for o in cluster.objects if o["kind"] == "KafkaTopic")
    bad = {**topic, "metadata": {**topic["metadata"], "name": "not-a-valid-topic"}}
    bad["spec"] = {**topic["spec"], "partitions": "six"}
    resource = dynamic.resources.get(api_version=bad["apiVersion"], kind=bad["kind"])
    with pytest.raises(ApiException) as err:
        resource.create(body=bad, namespace=bad["metadata"]["namespace"], query_params=[("dryRun", "All")])
    assert err.value.status == 422
    assert "spec.partitions" in str(err.value.body)


def kafdrop_objects() -> list[dict[str, Any]]:
    return manifests("k8s/ui/kafdrop.yaml")


def test_kafdrop_rolls_out_with_probes(cluster: Cluster, api: Any, dynamic: Any) -> None:
    from kubernetes import client

    objs = kafdrop_objects()
    for obj in objs:
        apply(dynamic, obj)
    deployment = next(o for o in objs if o["kind"] == "Deployment")
    name, ns = deployment["metadata"]["name"], deployment["metadata"]["namespace"]
    apps = client.AppsV1Api(api)

    def available() -> bool:
        status = apps.read_namespaced_deployment_status(name, ns).status
        conditions = {c.type: c.status for c in status.conditions or []}
        return (
            conditions.get("Available") == "True" and status.ready_replicas == deployment["spec"]["replicas"]
        )

    wait_for(f"Deployment {ns}/{name} Available", available, 90)
    stored = apps.read_namespaced_deployment(name, ns)
    for container in stored.spec.template.spec.containers:
        assert container.readiness_probe, container.name
        assert container.liveness_probe, container.name
        assert container.liveness_probe.http_get.path == "/actuator/health/liveness"
    pods = (
        client.CoreV1Api(api).list_namespaced_pod(ns, label_selector="app.kubernetes.io/name=kafdrop").items
    )
    assert pods
    assert all(p.spec.node_name and p.spec.node_name.startswith("kwok-node-") for p in pods)


def test_kafdrop_is_admitted_under_the_restricted_standard(api: Any, restricted_namespace: str) -> None:
    """Its pod template, created (dry run) in a namespace that enforces `restricted`."""
    from kubernetes import client

    deployment = next(o for o in kafdrop_objects() if o["kind"] == "Deployment")
    ns = restricted_namespace
    template = deployment["spec"]["template"]
    pod = {
        "metadata": {"name": "kafdrop-admission", "labels": template["metadata"]["labels"]},
        "spec": template["spec"],
    }
    created = client.CoreV1Api(api).create_namespaced_pod(ns, pod, dry_run="All")
    assert created.metadata.name == "kafdrop-admission"


def _resource_version(dynamic: Any, obj: dict[str, Any]) -> str:
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    return str(resource.get(name=obj["metadata"]["name"], namespace=namespace).metadata.resourceVersion)


def _subset(small: Any, big: Any) -> bool:
    """Everything in ``small`` is in ``big`` (the API server may add defaults, never drop fields)."""
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_subset, small, big))
    return bool(small == big or str(small) == str(big))
