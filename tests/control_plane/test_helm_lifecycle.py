"""`helm install`, `upgrade`, `rollback` and `uninstall` of the chart with each of its ci/*-values.yaml, for
real: namespaces that enforce the restricted Pod Security Standard, `--wait` until every Deployment is
Available on the fake nodes, upgrades that change replicas, the image tag, KEDA and security, a rollback
to the first revision, and an uninstall after which nothing of the release is left."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.control_plane.conftest import CHART, Helm, chart_values, wait_for

pytestmark = pytest.mark.timeout(600)

VALUES_FILES = sorted((CHART / "ci").glob("*-values.yaml"))
WAIT = ("--wait", "--timeout", "150s")
NEW_TAG = "9.9.9-k8s-api"


def merged_values(*files: Path, **sets: Any) -> dict[str, Any]:
    """values.yaml overlaid with ``files`` (deep merge, as Helm does) and dotted ``sets``."""

    def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(base)
        for key, value in over.items():
            out[key] = (
                merge(out[key], value)
                if isinstance(value, dict) and isinstance(out.get(key), dict)
                else value
            )
        return out

    values = chart_values()
    for file in files:
        values = merge(values, yaml.safe_load(file.read_text()) or {})
    for dotted, value in sets.items():
        *path, leaf = dotted.split(".")
        node = values
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return values


def set_args(**sets: Any) -> list[str]:
    out: list[str] = []
    for key, value in sets.items():
        out += ["--set", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return out


def deployments(api: Any, release: str, ns: str) -> dict[str, Any]:
    from kubernetes import client

    items = (
        client.AppsV1Api(api)
        .list_namespaced_deployment(ns, label_selector=f"app.kubernetes.io/instance={release}")
        .items
    )
    return {d.metadata.name: d for d in items}


def rolled_out(api: Any, release: str, ns: str) -> dict[str, tuple[int, list[str]]]:
    """name -> (replicas, images) of every Deployment of the release, once each is Available, fully
    updated, and its pods run on fake nodes with the template's images; raises saying what is missing."""
    from kubernetes import client

    core = client.CoreV1Api(api)
    state: dict[str, tuple[int, list[str]]] = {}
    found = deployments(api, release, ns)
    assert found, f"no Deployment of {release} in {ns}"
    for name, d in found.items():
        s, want = d.status, d.spec.replicas
        conditions = {c.type: c.status for c in s.conditions or []}
        counts = (
            s.observed_generation,
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
        )
        assert conditions.get("Available") == "True", f"{name} not Available: {conditions}"
        assert counts == (d.metadata.generation, want, want, want, want), (
            f"{name}: generation, replicas, updated, ready, available = {counts}, want {want}"
        )
        images = sorted(c.image for c in d.spec.template.spec.containers)
        selector = ",".join(f"{k}={v}" for k, v in d.spec.selector.match_labels.items())
        pods = [
            p
            for p in core.list_namespaced_pod(ns, label_selector=selector).items
            if not p.metadata.deletion_timestamp
        ]
        assert len(pods) == want, f"{name}: {len(pods)} pods, want {want}"
        for pod in pods:
            assert (pod.spec.node_name or "").startswith("kwok-node-"), (
                f"{pod.metadata.name} on {pod.spec.node_name}"
            )
            assert sorted(c.image for c in pod.spec.containers) == images, f"{pod.metadata.name}: old image"
        state[name] = (want, images)
    return state


def events(api: Any, ns: str) -> str:
    from kubernetes import client

    items = client.CoreV1Api(api).list_namespaced_event(ns).items
    return "\n".join(
        f"{e.involved_object.kind}/{e.involved_object.name}: {e.reason}: {e.message}" for e in items[-15:]
    )


@contextmanager
def step(name: str, api: Any, ns: str) -> Iterator[None]:
    """Name the lifecycle step (and the namespace's last events) in any failure inside it."""
    try:
        yield
    except BaseException as exc:
        if isinstance(exc, (AssertionError, pytest.fail.Exception)):
            raise AssertionError(f"step '{name}': {exc}\nlast events in {ns}:\n{events(api, ns)}") from exc
        raise


def expected_replicas(values: dict[str, Any]) -> dict[str, int]:
    """Deployment suffix -> replicas the values ask for (KEDA-managed consumers default to 1)."""
    out = {}
    if values["producer"]["enabled"]:
        out["producer"] = values["producer"]["replicas"]
    if values["consumer"]["enabled"]:
        out["consumer"] = 1 if values["keda"]["enabled"] else values["consumer"]["replicas"]
    return out


def check_state(api: Any, release: str, ns: str, values: dict[str, Any]) -> dict[str, tuple[int, list[str]]]:
    state = wait_for(f"release {release} rolled out", lambda: rolled_out(api, release, ns), 120)
    by_component = {name.rsplit("-", 1)[1]: replicas for name, (replicas, _) in state.items()}
    assert by_component == expected_replicas(values)
    scaled_objects = custom_objects(api, "keda.sh", "v1alpha1", "scaledobjects", ns=ns, release=release)
    assert bool(scaled_objects) == (values["keda"]["enabled"] and values["consumer"]["enabled"])
    for so in scaled_objects:
        assert so["spec"]["scaleTargetRef"]["name"] in state
        # never more consumers than input partitions (extra ones would idle)
        assert 1 <= so["spec"]["maxReplicaCount"] <= values["kafka"]["inputPartitions"]
    return state


def custom_objects(api: Any, group: str, version: str, plural: str, *, ns: str, release: str) -> list[Any]:
    from kubernetes import client

    found: list[Any] = client.CustomObjectsApi(api).list_namespaced_custom_object(
        group, version, ns, plural, label_selector=f"app.kubernetes.io/instance={release}"
    )["items"]
    return found


def served(dynamic: Any, api_version: str, kind: str) -> bool:
    from kubernetes.dynamic.exceptions import ResourceNotFoundError

    try:
        dynamic.resources.get(api_version=api_version, kind=kind)
    except ResourceNotFoundError:
        return False
    return True


def leftovers(dynamic: Any, release: str, namespaces: list[str]) -> list[str]:
    """Every object labelled with the release in ``namespaces``, of every listable namespaced kind the API
    serves (built-in and custom), plus Helm's release Secrets."""
    found = []
    seen = set()
    for resource in dynamic.resources.search(namespaced=True):
        verbs = getattr(resource, "verbs", None) or []
        if "list" not in verbs or "/" in resource.name or (resource.group, resource.name) in seen:
            continue
        seen.add((resource.group, resource.name))
        for ns in namespaces:
            items = resource.get(namespace=ns, label_selector=f"app.kubernetes.io/instance={release}").items
            found += [f"{resource.kind} {ns}/{i.metadata.name}" for i in items]
            if resource.kind == "Secret":
                helm = resource.get(namespace=ns, label_selector=f"owner=helm,name={release}").items
                found += [f"Helm release Secret {ns}/{i.metadata.name}" for i in helm]
    return found


@pytest.mark.parametrize(
    "values_file", VALUES_FILES, ids=[p.name.removesuffix("-values.yaml") for p in VALUES_FILES]
)
@pytest.mark.usefixtures("cluster")  # CRDs (ServiceMonitor, PrometheusRule, ScaledObject) and namespaces
def test_install_upgrade_rollback_uninstall(
    values_file: Path, helm: Helm, api: Any, dynamic: Any, restricted_namespace: str
) -> None:
    ns, release = restricted_namespace, f"ci-{values_file.name.removesuffix('-values.yaml')}"
    base = ["--namespace", ns, "--values", str(values_file)]
    values = merged_values(values_file)
    dashboards_ns = [values["dashboards"]["namespace"]] if values["dashboards"]["namespace"] else []

    with step("install", api, ns):
        helm("install", release, str(CHART), *base, *WAIT)
        first = check_state(api, release, ns, values)

    with step("upgrade: more replicas", api, ns):
        sets = {"keda.enabled": False, "consumer.replicas": 3, "producer.replicas": 2}
        helm("upgrade", release, str(CHART), *base, *set_args(**sets), *WAIT)
        check_state(api, release, ns, merged_values(values_file, **sets))

    with step("upgrade: new image tag, KEDA on", api, ns):
        # with Kafka security on, the ScaledObject authenticates through a KEDA TriggerAuthentication,
        # whose CRD `make crds` provides (KEDA's chart installs it); a CRD_DIR without it keeps KEDA off here
        keda = not values["kafka"]["security"]["enabled"] or served(
            dynamic, "keda.sh/v1alpha1", "TriggerAuthentication"
        )
        sets = {"image.tag": NEW_TAG, "keda.enabled": keda}
        helm("upgrade", release, str(CHART), *base, *set_args(**sets), *WAIT)
        state = check_state(api, release, ns, merged_values(values_file, **sets))
        for name, (_, images) in state.items():
            assert all(i.endswith(f":{NEW_TAG}") for i in images), f"{name}: {images}"

    with step("upgrade: KEDA off", api, ns):
        sets = {"image.tag": NEW_TAG, "keda.enabled": False}
        helm("upgrade", release, str(CHART), *base, *set_args(**sets), *WAIT)
        check_state(api, release, ns, merged_values(values_file, **sets))

    with step("rollback to revision 1", api, ns):
        helm("rollback", release, "1", "--namespace", ns, *WAIT)
        assert check_state(api, release, ns, values) == first
        history = yaml.safe_load(helm("history", release, "--namespace", ns, "--output", "yaml").stdout)
        assert [h["revision"] for h in history] == [1, 2, 3, 4, 5]
        assert history[-1]["status"] == "deployed"
        assert "Rollback to 1" in history[-1]["description"]

    with step("uninstall", api, ns):
        helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "120s")

        def nothing_left() -> bool:
            found = leftovers(dynamic, release, [ns, *dashboards_ns])
            assert not found, f"left after uninstall: {found}"
            return True

        wait_for(f"nothing of {release} left", nothing_left, 90, 1)
        assert not helm("list", "--namespace", ns, "--all", "--short").stdout.strip()


SECURITY = chart_values()["kafka"].get("security")
SECURE_BOOTSTRAP = "login-stream-kafka-bootstrap:9093"  # the scram-sha-512 listener of k8s/kafka/kafka.yaml


@pytest.mark.skipif(
    not (isinstance(SECURITY, dict) and "enabled" in SECURITY),
    reason="the chart has no kafka.security.enabled value: nothing to switch on and off",
)
@pytest.mark.usefixtures("cluster")
def test_security_on_and_off(helm: Helm, api: Any, restricted_namespace: str) -> None:
    ns, release = restricted_namespace, "ci-security"
    default = VALUES_FILES[0]
    base = ["--namespace", ns, "--values", str(default)]
    start = bool(merged_values(default)["kafka"]["security"]["enabled"])
    for enabled in (not start, start):
        with step(f"kafka.security.enabled={enabled}", api, ns):
            sets: dict[str, Any] = {"kafka.security.enabled": enabled}
            if enabled:
                sets["kafka.bootstrapServers"] = SECURE_BOOTSTRAP
            helm("upgrade", "--install", release, str(CHART), *base, *set_args(**sets), *WAIT)
            check_state(api, release, ns, merged_values(default, **sets))
            users = custom_objects(api, "kafka.strimzi.io", "v1", "kafkausers", ns=ns, release=release)
            assert bool(users) == enabled, (
                f"KafkaUsers with security {enabled}: {[u['metadata']['name'] for u in users]}"
            )
    helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "120s")
