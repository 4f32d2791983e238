"""Fixtures of the control-plane tier: a real kube-apiserver (login_devtools/k8s_api.py), Helm, the CRDs,
k8s/.

The session starts the control plane unless one already runs (`make k8s-api-up`), and stops what it
started at the end, etcd's data included. Binaries that are not built yet skip the tier with the reason
(`make test` gives their first build K8S_BUILD_BUDGET seconds; `make k8s-api-build` finishes it). helm
and the CRDs are found as tests/chart finds them: missing ones fail under CI and skip elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from login_devtools import k8s_api
from tests.chart.conftest import find_crd_dir, tool, unavailable
from tests.chart.kube_schemas import crd_files, crds_in, load_file

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "login-stream"
SCRIPT = [sys.executable, "-m", "login_devtools.k8s_api"]
FIELD_MANAGER = "login-stream-tests"
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/warn": "restricted",
}
T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60, interval: float = 0.5) -> T:
    """Call ``probe`` until it returns something truthy; after ``timeout`` fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except Exception as exc:  # noqa: BLE001 - kept as the last observation
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}"[:3000])
        time.sleep(interval)


@dataclass(frozen=True)
class ControlPlane:
    kubeconfig: Path
    server: str
    logs: Path


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    cp = k8s_api
    if not cp.built():
        pytest.skip(
            f"the local control plane is not built yet (binaries in {cp.BIN}): `make k8s-api-build` "
            "builds it once; `make test` gives that first build K8S_BUILD_BUDGET seconds"
        )
    before = [cp.running(c) is not None for c in cp.COMPONENTS]
    started = not all(before)
    if started:
        try:
            out = subprocess.run(
                [*SCRIPT, "up", "--timeout", "240"],
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
        except subprocess.TimeoutExpired:
            subprocess.run([*SCRIPT, "down"], timeout=120, check=False)
            pytest.fail(f"the control plane did not come up within 300 s; logs: {cp.LOGS}", pytrace=False)
        if out.returncode:
            subprocess.run([*SCRIPT, "down"], timeout=120, check=False)
            pytest.fail(f"make k8s-api-up failed:\n{out.stdout}\n{out.stderr}"[-4000:], pytrace=False)
    try:
        yield ControlPlane(cp.KUBECONFIG, cp.server(), cp.LOGS)
    finally:
        if started:
            # a control plane this session started goes away with it; a clean etcd only when none ran
            purge = ["--purge"] if not any(before) else []
            subprocess.run([*SCRIPT, "down", *purge], timeout=120, check=False)


@pytest.fixture(scope="session")
def api(control_plane: ControlPlane) -> Any:
    """A kubernetes.client.ApiClient for the local control plane, as its admin (system:masters)."""
    from kubernetes import config

    client = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    client.configuration.retries = 2
    return client


@pytest.fixture(scope="session")
def dynamic(api: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    from kubernetes.dynamic import DynamicClient

    # a discovery cache of this session only: CRDs appear during it
    return DynamicClient(api, cache_file=str(tmp_path_factory.mktemp("discovery") / "cache.json"))


def impersonating(api: Any, user: str) -> Any:
    """An ApiClient that acts as ``user`` (what `kubectl --as` does: the Impersonate-User header)."""
    from kubernetes import client

    other = client.ApiClient(api.configuration)
    other.default_headers["Impersonate-User"] = user
    return other


# --- Helm -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Helm:
    binary: str
    kubeconfig: Path
    home: Path

    def __call__(
        self, *args: str, timeout: float = 200, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "HELM_CACHE_HOME": str(self.home / "cache"),
            "HELM_CONFIG_HOME": str(self.home / "config"),
            "HELM_DATA_HOME": str(self.home / "data"),
        }
        out = subprocess.run(
            [self.binary, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
        if check and out.returncode:
            pytest.fail(
                f"helm {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}", pytrace=False
            )
        return out

    def values(self, release: str, namespace: str) -> dict[str, Any]:
        out = self("get", "values", release, "--namespace", namespace, "--all", "--output", "json")
        values: dict[str, Any] = json.loads(out.stdout)
        return values

    def manifest(self, release: str, namespace: str, revision: int | None = None) -> list[dict[str, Any]]:
        args = ["get", "manifest", release, "--namespace", namespace]
        if revision is not None:
            args += ["--revision", str(revision)]
        return [d for d in yaml.safe_load_all(self(*args).stdout) if d]


@pytest.fixture(scope="session")
def helm(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Helm:
    return Helm(tool("helm"), control_plane.kubeconfig, tmp_path_factory.mktemp("helm"))


# --- applying manifests -----------------------------------------------------------------------------


def apply(dynamic: Any, obj: dict[str, Any]) -> Any:
    """Server-side apply of one object (force: this test suite owns the fields it sets)."""
    resource = dynamic.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
    namespace = obj["metadata"].get("namespace") if resource.namespaced else None
    return resource.server_side_apply(
        body=obj,
        name=obj["metadata"]["name"],
        namespace=namespace,
        field_manager=FIELD_MANAGER,
        force_conflicts=True,
    )


def manifests(*relative: str) -> list[dict[str, Any]]:
    """Every object of the YAML files (or directories) under the checkout, in file order."""
    objs: list[dict[str, Any]] = []
    for rel in relative:
        path = ROOT / rel
        for file in sorted(path.glob("*.yaml")) if path.is_dir() else [path]:
            objs += load_file(file)
    return objs


def namespace(api: Any, name: str, labels: dict[str, str] | None = None) -> str:
    """Create (or label) namespace ``name``; wait for its default ServiceAccount."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    core = client.CoreV1Api(api)
    body = {"metadata": {"name": name, "labels": labels or {}}}
    try:
        core.create_namespace(body)
    except ApiException as exc:
        if exc.status != 409:
            raise
        core.patch_namespace(name, body)
    wait_for(
        f"ServiceAccount default in {name}",
        lambda: core.list_namespaced_service_account(name, field_selector="metadata.name=default").items,
        30,
    )
    return name


def delete_namespace(api: Any, name: str) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    try:
        client.CoreV1Api(api).delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise


@pytest.fixture
def restricted_namespace(api: Any) -> Iterator[str]:
    """A fresh namespace labelled pod-security.kubernetes.io/enforce=restricted, deleted afterwards."""
    name = namespace(api, f"ls-{uuid.uuid4().hex[:8]}", RESTRICTED)
    yield name
    delete_namespace(api, name)


# --- the cluster of `make cluster`: CRDs and k8s/ ---------------------------------------------------


@dataclass(frozen=True)
class Cluster:
    crds: list[dict[str, Any]]
    objects: list[dict[str, Any]]


def crd_established(api: Any, name: str) -> bool:
    from kubernetes import client

    crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions or [])


@pytest.fixture(scope="session")
def cluster(api: Any, dynamic: Any) -> Cluster:
    """The CRDs (CRD_DIR, else `make crds`' .cache/crds or ../shared/crds) and k8s/ applied as `make cluster`
    applies them (namespaces, Kafka, node pool, topics, users, PodMonitors), server-side."""
    crd_dir, reason = find_crd_dir()
    if crd_dir is None:
        unavailable(reason)
        raise AssertionError
    crds = [crd for crd, _ in crds_in(crd_files(crd_dir))]
    for crd in crds:
        apply(dynamic, crd)
    for crd in crds:
        wait_for(
            f"CRD {crd['metadata']['name']} Established",
            lambda c=crd: crd_established(api, c["metadata"]["name"]),
        )
    dynamic.resources.invalidate_cache()
    objects = manifests("k8s/namespaces.yaml", "k8s/kafka", "k8s/monitoring")
    for obj in objects:
        apply(dynamic, obj)
    return Cluster(crds, objects)


def chart_values() -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    return values


DEPLOY_NAMESPACE = "login-stream"


@pytest.fixture(scope="session")
def deployed(cluster: Cluster, helm: Helm, api: Any) -> Iterator[list[dict[str, Any]]]:
    """The release `make deploy` installs (k8s/values/login-stream.yaml, image tag dev), NetworkPolicy on,
    in namespace login-stream labelled to enforce `restricted`; its manifest. Uninstalled at the end."""
    namespace(api, DEPLOY_NAMESPACE, RESTRICTED)
    helm(
        "upgrade", "--install", DEPLOY_NAMESPACE, str(CHART), "--namespace", DEPLOY_NAMESPACE,
        "--values", str(ROOT / "k8s/values/login-stream.yaml"), "--set", "image.tag=dev",
        "--set", "networkPolicy.enabled=true", "--wait", "--timeout", "150s",
    )  # fmt: skip
    yield helm.manifest(DEPLOY_NAMESPACE, DEPLOY_NAMESPACE)
    helm(
        "uninstall",
        DEPLOY_NAMESPACE,
        "--namespace",
        DEPLOY_NAMESPACE,
        "--wait",
        "--timeout",
        "120s",
        check=False,
    )
