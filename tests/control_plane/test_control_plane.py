"""The control plane itself is what the tier claims: the pinned Kubernetes, RBAC and PodSecurity admission
on, fake nodes Ready and schedulable (the node lifecycle controller cleared the not-ready taint)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from login_devtools import k8s_api
from tests.control_plane.conftest import (
    RESTRICTED,
    ControlPlane,
    delete_namespace,
    impersonating,
    namespace,
)

pytestmark = pytest.mark.timeout(300)


def test_the_api_server_runs_the_pinned_kubernetes_on_loopback(api: Any, control_plane: ControlPlane) -> None:
    from kubernetes import client

    pinned = k8s_api.versions()["KUBERNETES_VERSION"]
    assert client.VersionApi(api).get_code().git_version == pinned
    assert control_plane.server.startswith("https://127.0.0.1:")


def test_fake_nodes_are_ready_and_schedulable(api: Any) -> None:
    from kubernetes import client

    cp = k8s_api
    nodes = {n.metadata.name: n for n in client.CoreV1Api(api).list_node().items}
    assert set(cp.node_names()) <= set(nodes)
    for name in cp.node_names():
        node = nodes[name]
        conditions = {c.type: c.status for c in node.status.conditions}
        assert conditions["Ready"] == "True", f"{name}: {conditions}"
        taints = [t.key for t in node.spec.taints or []]
        assert not taints, f"{name} still tainted: {taints}"
        assert not node.spec.unschedulable


def test_pod_security_admission_rejects_an_unhardened_pod_in_a_restricted_namespace(api: Any) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ns = namespace(api, f"psa-{uuid.uuid4().hex[:8]}", RESTRICTED)
    try:
        # valid, and admitted anywhere else: no securityContext (root allowed, capabilities kept, no seccomp)
        pod = {
            "metadata": {"name": "unhardened"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        }
        with pytest.raises(ApiException) as err:
            client.CoreV1Api(api).create_namespaced_pod(ns, pod, dry_run="All")
        assert err.value.status == 403
        assert 'violates PodSecurity "restricted:' in json.loads(err.value.body)["message"]
        assert client.CoreV1Api(api).create_namespaced_pod("default", pod, dry_run="All").metadata.name
    finally:
        delete_namespace(api, ns)


def test_rbac_denies_a_service_account_without_bindings(api: Any) -> None:
    from kubernetes import client

    ns = namespace(api, f"rbac-{uuid.uuid4().hex[:8]}")
    try:
        as_default = impersonating(api, f"system:serviceaccount:{ns}:default")
        review = {"spec": {"resourceAttributes": {"namespace": ns, "verb": "list", "resource": "secrets"}}}
        answer = client.AuthorizationV1Api(as_default).create_self_subject_access_review(review)
        assert answer.status.allowed is False
        review["spec"]["resourceAttributes"]["verb"] = "delete"
        assert client.AuthorizationV1Api(api).create_self_subject_access_review(review).status.allowed is True
    finally:
        delete_namespace(api, ns)
