"""`make e2e`: the deployed pipeline, through the Kubernetes API of the current kube context.

Before any test, the session checks that a cluster answers; when none does it stops with the reason
and exit code 3 — never a run that passes without having tested anything. Settings (environment):
E2E_CONTEXT (kube context, default: current), E2E_NAMESPACE / E2E_RELEASE / E2E_KAFKA (login-stream),
E2E_MONITORING_NAMESPACE (monitoring), E2E_PROMETHEUS (kube-prometheus-stack-prometheus:9090),
E2E_EVENTS (events of the scale test, 2000).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

NO_CLUSTER_EXIT = 3
T = TypeVar("T")


@dataclass(frozen=True)
class Settings:
    context: str | None = os.environ.get("E2E_CONTEXT") or None
    namespace: str = os.environ.get("E2E_NAMESPACE", "login-stream")
    release: str = os.environ.get("E2E_RELEASE", "login-stream")
    kafka: str = os.environ.get("E2E_KAFKA", "login-stream")
    monitoring: str = os.environ.get("E2E_MONITORING_NAMESPACE", "monitoring")
    prometheus: str = os.environ.get("E2E_PROMETHEUS", "kube-prometheus-stack-prometheus:9090")
    events: int = int(os.environ.get("E2E_EVENTS", "2000"))


SETTINGS = Settings()


def cluster_problem() -> str | None:
    """None when the API server of the kube context answers; else why not."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not os.environ.get("KUBECONFIG"):
            config.load_incluster_config()
        else:
            config.load_kube_config(context=SETTINGS.context)
    except (ConfigException, OSError, TypeError, ValueError) as exc:
        where = os.environ.get("KUBECONFIG", "~/.kube/config")
        return f"no usable kubeconfig ({where}): {str(exc).rstrip('.')}"
    api = client.ApiClient()
    api.configuration.retries = 0
    host = api.configuration.host
    try:
        version = client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:  # noqa: BLE001 - any failure means "no cluster to test"
        return f"the API server at {host} does not answer ({type(exc).__name__}: {str(exc)[:160]})"
    print(f"e2e: cluster at {host}, Kubernetes {version.git_version}")
    return None


def pytest_sessionstart(session: pytest.Session) -> None:
    if session.config.option.collectonly:
        return  # listing the tests needs no cluster
    problem = cluster_problem()
    if problem:
        pytest.exit(
            f"make e2e needs a reachable Kubernetes cluster and found none: {problem}. "
            "Create one with `make cluster deploy` (kind), or point KUBECONFIG / E2E_CONTEXT at one.",
            returncode=NO_CLUSTER_EXIT,
        )


@pytest.fixture(scope="session")
def settings() -> Settings:
    return SETTINGS


@pytest.fixture(scope="session")
def api() -> Any:
    from kubernetes import client

    return client.ApiClient()


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 3.0) -> T:
    """Call ``probe`` until it returns something truthy; after ``timeout``, fail naming ``what``."""
    import time

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
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last seen: {last!r}"[:2000])
        time.sleep(interval)
