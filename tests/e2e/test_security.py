"""The deployed release runs with Kafka security on (docs/security.md): TLS + authenticated listeners,
`authorization: simple`, one Ready KafkaUser per service whose Secret the pods use.

`make e2e` deploys with k8s/values/login-stream.yaml, which switches `kafka.security` on; these tests fail
when a release runs without it.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.e2e.conftest import Settings, wait_for

pytestmark = pytest.mark.timeout(600)


def _custom(api: Any, s: Settings, plural: str, name: str) -> dict[str, Any]:
    from kubernetes import client

    found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kafka.strimzi.io", "v1", s.namespace, plural, name
    )
    return found


def _ready(obj: dict[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in obj.get("status", {}).get("conditions", [])
    )


def test_kafka_listeners_are_tls_and_authenticated(api: Any, settings: Settings) -> None:
    kafka = _custom(api, settings, "kafkas", settings.kafka)
    listeners = kafka["spec"]["kafka"]["listeners"]
    assert all(lst.get("tls") and lst.get("authentication") for lst in listeners), listeners
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"


@pytest.mark.parametrize("component", ["producer", "consumer", "check"])
def test_each_service_has_a_ready_kafka_user_and_its_secret(
    api: Any, settings: Settings, component: str
) -> None:
    from kubernetes import client

    name = f"{settings.release}-{component}"

    def ready_user() -> dict[str, Any] | None:
        user = _custom(api, settings, "kafkausers", name)
        return user if _ready(user) else None

    user = wait_for(f"KafkaUser {name} Ready", ready_user, 300)
    secret = client.CoreV1Api(api).read_namespaced_secret(name, settings.namespace)
    if user["spec"]["authentication"]["type"] == "scram-sha-512":
        assert {"password", "sasl.jaas.config"} <= set(secret.data)
    else:
        assert {"user.crt", "user.key"} <= set(secret.data)


@pytest.mark.parametrize("component", ["producer", "consumer"])
def test_pods_authenticate_as_their_own_user(api: Any, settings: Settings, component: str) -> None:
    from kubernetes import client

    deployment = client.AppsV1Api(api).read_namespaced_deployment(
        f"{settings.release}-{component}", settings.namespace
    )
    env = {e.name: e.value for e in deployment.spec.template.spec.containers[0].env or []}
    assert env.get("SECURITY_PROTOCOL") in ("SASL_SSL", "SSL"), (
        "make e2e must run with kafka.security.enabled"
    )
    if env["SECURITY_PROTOCOL"] == "SASL_SSL":
        assert env["SASL_USERNAME"] == f"{settings.release}-{component}"
        assert "SASL_PASSWORD" not in env
    secrets = {v.secret.secret_name for v in deployment.spec.template.spec.volumes if v.secret}
    assert f"{settings.release}-{component}" in secrets
    assert f"{settings.kafka}-cluster-ca-cert" in secrets
