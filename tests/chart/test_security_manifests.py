"""Kafka security on Strimzi, offline: listeners, KafkaUsers, the Secrets the chart mounts, Kafdrop, KEDA.

What this relies on from upstream, read at the pinned versions and pinned here:

* Strimzi 1.2.0 (strimzi/strimzi-kafka-operator, tag 1.2.0, commit 6c7b43c4):
  - user-operator/src/main/java/io/strimzi/operator/user/model/KafkaUserModel.java: the user Secret is
    named ``secretPrefix + <KafkaUser name>`` (prefix empty by default); SCRAM users get keys ``password``
    (KEY_PASSWORD) and ``sasl.jaas.config`` (KEY_SASL_JAAS_CONFIG); tls users ``ca.crt``, ``user.key``,
    ``user.crt``, ``user.p12``, ``user.password``; the SCRAM user name is the KafkaUser name
    (getScramUserName), a tls user's principal ``CN=<name>`` (getTlsUserName).
  - api/src/main/java/io/strimzi/api/kafka/model/kafka/KafkaResources.java: clusterCaCertificateSecretName
    = ``<cluster>-cluster-ca-cert``; operator-common/.../ca/Ca.java: CA_CRT = ``ca.crt``.
  - cluster-operator/.../assembly/KafkaListenersReconciler.java (nodePortServicesReady): a nodeport
    listener's ``advertisedHost`` joins the broker certificate's DNS names: TLS to localhost:31092 verifies.
  - packaging/install/cluster-operator/044-Crd-kafkauser.yaml and 040-Crd-kafka.yaml (the CRDs in CRD_DIR):
    authentication types, ACL resource types and operations, listener authentication, authorization simple.
* KEDA v2.20.2 (kedacore/keda): pkg/scalers/kafka_scaler.go reads ``sasl``/``tls`` from the trigger metadata
  and ``ca``, ``cert``, ``key``, ``username``, ``password`` from authParams; apis/keda/v1alpha1/
  triggerauthentication_types.go: ``secretTargetRef[] {parameter, name, key}``, ``env[] {parameter, name,
  containerName}``.
* Kafdrop 4.2.0 (obsidiandynamics/kafdrop): application.yml binds kafka.propertiesFile to
  KAFKA_PROPERTIES_FILE; KafkaConfiguration.applyCommon loads that file into every client's properties.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from login_common import acls
from tests.chart.conftest import CHART, ROOT, Render, find, one, schema_problems
from tests.chart.kube_schemas import Obj, Validator, load_file

# --- pinned upstream names (see the module docstring) ----------------------------------------------------
SCRAM_SECRET_KEYS = {"password", "sasl.jaas.config"}
TLS_SECRET_KEYS = {"ca.crt", "user.key", "user.crt", "user.p12", "user.password"}
CLUSTER_CA_SECRET = "{cluster}-cluster-ca-cert"  # noqa: S105 - a Secret name
CLUSTER_CA_KEY = "ca.crt"
KEDA_AUTH_PARAMS = {"ca", "cert", "key", "username", "password"}
KEDA_SASL = {"none", "plaintext", "scram_sha256", "scram_sha512", "oauthbearer", "gssapi"}
KAFDROP_PROPERTIES_ENV = "KAFKA_PROPERTIES_FILE"

SECURITY_VALUES = CHART / "ci" / "security-values.yaml"
MTLS_VALUES = CHART / "ci" / "security-mtls-values.yaml"
KIND_VALUES = ROOT / "k8s" / "values" / "login-stream.yaml"
SERVICES = ("producer", "consumer")


def _kafka() -> Obj:
    return next(o for o in load_file(ROOT / "k8s" / "kafka" / "kafka.yaml") if o["kind"] == "Kafka")


def _listeners() -> dict[str, dict[str, Any]]:
    return {lst["name"]: lst for lst in _kafka()["spec"]["kafka"]["listeners"]}


def _strimzi_rules(user: Obj) -> set[tuple[str, str, str, str]]:
    """A KafkaUser's ACLs as (resource, name, pattern, operation); a cluster resource has no name."""
    out = set()
    for rule in user["spec"]["authorization"]["acls"]:
        assert rule.get("type", "allow") == "allow"
        assert rule.get("host", "*") == "*"
        res = rule["resource"]
        name = acls.CLUSTER if res["type"] == "cluster" else res["name"]
        pattern = res.get("patternType", "literal")
        out |= {(res["type"], name, pattern, op) for op in rule["operations"]}
    return out


def _env(container: Obj) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


# --- the Kafka cluster -----------------------------------------------------------------------------------


def test_every_listener_is_tls_and_authenticated_and_authorization_is_simple() -> None:
    kafka = _kafka()
    listeners = _listeners()
    for name, listener in listeners.items():
        assert listener["tls"] is True, f"listener {name} must be TLS"
        assert listener["authentication"]["type"] in ("scram-sha-512", "tls"), name
    assert listeners["tls"]["authentication"]["type"] == "scram-sha-512"
    assert listeners["mtls"]["authentication"]["type"] == "tls"
    external = listeners["external"]  # host tools: the certificate names localhost (see the docstring)
    assert {b["advertisedHost"] for b in external["configuration"]["brokers"]} == {"localhost"}
    assert kafka["spec"]["kafka"]["authorization"] == {"type": "simple"}  # no super user
    assert "userOperator" in kafka["spec"]["entityOperator"]  # KafkaUsers need it


def test_the_kind_deployment_uses_the_tls_listener_with_security_on() -> None:
    values = yaml.safe_load(KIND_VALUES.read_text())
    kafka = _kafka()
    assert values["kafka"]["security"]["enabled"] is True
    port = _listeners()["tls"]["port"]
    assert values["kafka"]["bootstrapServers"] == f"{kafka['metadata']['name']}-kafka-bootstrap:{port}"
    for path, listener in ((SECURITY_VALUES, "tls"), (MTLS_VALUES, "mtls")):
        ci = yaml.safe_load(path.read_text())
        assert ci["kafka"]["bootstrapServers"].endswith(f":{_listeners()[listener]['port']}")


# --- the chart -------------------------------------------------------------------------------------------


def test_security_off_renders_no_credentials(render: Render) -> None:
    objs = render("ci/default-values.yaml")
    assert not find(objs, "KafkaUser")
    for deployment in find(objs, "Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert not {"SECURITY_PROTOCOL", "SASL_USERNAME"} & set(_env(container))


@pytest.mark.parametrize("values", [SECURITY_VALUES, MTLS_VALUES], ids=["scram-sha-512", "tls"])
def test_security_values_render_schema_valid_objects(
    render: Render, validator: Validator, values: Path
) -> None:
    problems = schema_problems(render(values), validator)
    assert not problems, "\n".join(problems)


def test_kafka_users_carry_the_least_privilege_acls(render: Render) -> None:
    objs = render(SECURITY_VALUES)
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    topics, group = values["kafka"]["topics"], values["consumer"]["groupId"]
    expected = {
        "producer": acls.producer_acls(topics["input"]),
        "consumer": acls.consumer_acls(topics["input"], topics["output"], topics["dlq"], group),
        "check": acls.check_acls(topics["input"], topics["output"], topics["dlq"]),
    }
    users = {u["metadata"]["name"]: u for u in find(objs, "KafkaUser")}
    assert set(users) == {f"login-stream-{c}" for c in expected}
    for component, wanted in expected.items():
        user = users[f"login-stream-{component}"]
        assert user["apiVersion"] == "kafka.strimzi.io/v1"
        assert user["metadata"]["labels"]["strimzi.io/cluster"] == _kafka()["metadata"]["name"]
        assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
        assert user["spec"]["authorization"]["type"] == "simple"
        assert _strimzi_rules(user) == acls.rules(wanted), component
    consumer = _strimzi_rules(users["login-stream-consumer"])
    # the consumer owns its internal topics, group and transactional ids by prefix, and nothing beyond
    assert ("topic", f"{group}-", "prefix", "Create") in consumer
    assert ("transactionalId", f"{group}-", "prefix", "Write") in consumer
    # every prefix ends with "-": "<group>z..." (another consumer's group, topic or id) is not this user's
    assert all(name.endswith("-") for _, name, pattern, _ in consumer if pattern == "prefix")
    assert not any(op in ("All", "Alter", "AlterConfigs", "ClusterAction") for *_, op in consumer)
    # Delete only on its own internal topics (DeleteRecords: the repartition topic's purge)
    assert {name for kind, name, _, op in consumer if op == "Delete"} == {f"{group}-"}
    producer = _strimzi_rules(users["login-stream-producer"])
    assert not any(op == "Read" for *_, op in producer)


def test_users_follow_the_values(render: Render) -> None:
    objs = render(SECURITY_VALUES, **{"consumer.groupId": "risk", "kafka.topics.input": "raw"})
    consumer = _strimzi_rules(one(objs, "KafkaUser", "login-stream-consumer"))
    assert acls.rules(acls.consumer_acls("raw", "processed-logins", "user-login-dlq", "risk")) == consumer
    off = render(SECURITY_VALUES, **{"kafka.security.createUsers": False})
    assert not find(off, "KafkaUser")


@pytest.mark.parametrize("component", SERVICES)
def test_scram_pods_mount_the_strimzi_secrets(render: Render, component: str) -> None:
    objs = render(SECURITY_VALUES)
    pod = one(objs, "Deployment", f"login-stream-{component}")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    env = _env(container)
    user = f"login-stream-{component}"
    assert env["SECURITY_PROTOCOL"] == "SASL_SSL"
    assert env["SASL_MECHANISM"] == "SCRAM-SHA-512"
    assert env["SASL_USERNAME"] == user  # Strimzi: the SCRAM user name is the KafkaUser's name
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    user_secret = volumes["kafka-user"]["secret"]
    assert user_secret["secretName"] == user
    assert {i["key"] for i in user_secret["items"]} <= SCRAM_SECRET_KEYS
    assert env["SASL_PASSWORD_FILE"] == f"{mounts['kafka-user']}/password"
    assert {"key": "password", "path": "password"} in user_secret["items"]
    ca = volumes["kafka-ca"]["secret"]
    assert ca["secretName"] == CLUSTER_CA_SECRET.format(cluster="login-stream")
    assert ca["items"] == [{"key": CLUSTER_CA_KEY, "path": "ca.crt"}]
    assert env["SSL_CA_LOCATION"] == f"{mounts['kafka-ca']}/ca.crt"
    assert "SASL_PASSWORD" not in env  # the password is never in the pod spec


def test_mutual_tls_pods_use_the_user_certificate(render: Render) -> None:
    objs = render(MTLS_VALUES)
    for user in find(objs, "KafkaUser"):
        assert user["spec"]["authentication"] == {"type": "tls"}
    pod = one(objs, "Deployment", "login-stream-consumer")["spec"]["template"]["spec"]
    env = _env(pod["containers"][0])
    assert env["SECURITY_PROTOCOL"] == "SSL"
    assert not any(name.startswith("SASL_") for name in env)
    volumes = {v["name"]: v["secret"] for v in pod["volumes"] if "secret" in v}
    assert {i["key"] for i in volumes["kafka-user"]["items"]} == {"user.crt", "user.key"} <= TLS_SECRET_KEYS
    assert env["SSL_CERTIFICATE_LOCATION"].endswith("/user.crt")
    assert env["SSL_KEY_LOCATION"].endswith("/user.key")
    assert volumes["kafka-ca"]["secretName"] == "my-kafka-cluster-ca-cert"  # kafka.security.caSecret


def test_helm_test_pod_runs_as_the_check_user(render: Render) -> None:
    pod = one(render(SECURITY_VALUES), "Pod")["spec"]
    env = _env(pod["containers"][0])
    assert env["SASL_USERNAME"] == "login-stream-check"
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    assert secrets == {"login-stream-check", "login-stream-cluster-ca-cert"}


def test_keda_reads_the_lag_as_the_consumer_user(render: Render) -> None:
    objs = render(SECURITY_VALUES, **{"keda.enabled": True})
    trigger = one(objs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["metadata"]["tls"] == "enable"
    assert trigger["metadata"]["sasl"] == "scram_sha512"
    assert trigger["metadata"]["sasl"] in KEDA_SASL
    auth = one(objs, "TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["apiVersion"] == "keda.sh/v1alpha1"
    assert set(auth["spec"]) == {"secretTargetRef", "env"}
    refs = {r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]}
    assert refs == {
        "ca": ("login-stream-cluster-ca-cert", CLUSTER_CA_KEY),
        "password": ("login-stream-consumer", "password"),
    }
    assert auth["spec"]["env"] == [
        {"parameter": "username", "name": "SASL_USERNAME", "containerName": "consumer"}
    ]
    assert set(refs) | {e["parameter"] for e in auth["spec"]["env"]} <= KEDA_AUTH_PARAMS
    mtls = render(MTLS_VALUES, **{"keda.enabled": True})
    mtls_auth = one(mtls, "TriggerAuthentication")
    assert {r["parameter"] for r in mtls_auth["spec"]["secretTargetRef"]} == {"ca", "cert", "key"}
    assert one(mtls, "ScaledObject")["spec"]["triggers"][0]["metadata"]["sasl"] == "none"


# --- Kafdrop ---------------------------------------------------------------------------------------------


def test_kafdrop_authenticates_with_its_own_read_only_user() -> None:
    objs = load_file(ROOT / "k8s" / "ui" / "kafdrop.yaml")
    user = one(objs, "KafkaUser", "kafdrop")
    assert user["spec"]["authentication"] == {"type": "scram-sha-512"}
    assert _strimzi_rules(user) == acls.rules(acls.kafdrop_acls())
    deployment = one(objs, "Deployment", "kafdrop")["spec"]["template"]["spec"]
    container = deployment["containers"][0]
    env = _env(container)
    assert env["KAFKA_BROKERCONNECT"] == f"login-stream-kafka-bootstrap:{_listeners()['tls']['port']}"
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["volumes"]}
    assert env[KAFDROP_PROPERTIES_ENV] == f"{mounts['kafka-properties']}/kafka.properties"
    config_map = one(objs, "ConfigMap", volumes["kafka-properties"]["configMap"]["name"])
    props = dict(
        line.split("=", 1) for line in config_map["data"]["kafka.properties"].splitlines() if "=" in line
    )
    assert props["security.protocol"] == "SASL_SSL"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.jaas.config"] == f"${{dir:{mounts['kafka-user']}:sasl.jaas.config}}"
    assert props["config.providers.dir.class"].endswith("DirectoryConfigProvider")
    assert props["ssl.truststore.location"] == f"{mounts['kafka-ca']}/ca.crt"
    assert volumes["kafka-user"]["secret"]["secretName"] == "kafdrop"
    assert (
        {i["key"] for i in volumes["kafka-user"]["secret"]["items"]}
        == {"sasl.jaas.config"}
        <= SCRAM_SECRET_KEYS
    )
    ca = volumes["kafka-ca"]["secret"]
    assert (ca["secretName"], ca["items"][0]["key"]) == (
        CLUSTER_CA_SECRET.format(cluster="login-stream"),
        CLUSTER_CA_KEY,
    )


def test_the_strimzi_crds_know_the_fields_relied_on(crd_dir: Path) -> None:
    """The KafkaUser and Kafka CRDs of Strimzi 1.2.0 accept the authentication and ACL values used here."""
    docs = {}
    for path in crd_dir.glob("strimzi-*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "CustomResourceDefinition":
                docs[doc["spec"]["names"]["kind"]] = doc

    def spec(kind: str) -> dict[str, Any]:
        version = next(v for v in docs[kind]["spec"]["versions"] if v.get("served"))
        return dict(version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"])

    user = spec("KafkaUser")
    assert set(user["authentication"]["properties"]["type"]["enum"]) >= {"scram-sha-512", "tls"}
    acl = user["authorization"]["properties"]["acls"]["items"]["properties"]
    assert set(acl["resource"]["properties"]["type"]["enum"]) >= {
        "topic",
        "group",
        "transactionalId",
        "cluster",
    }
    assert set(acl["resource"]["properties"]["patternType"]["enum"]) == {"literal", "prefix"}
    used = {
        op
        for rules in (acls.consumer_acls(), acls.producer_acls(), acls.kafdrop_acls())
        for *_, op in acls.rules(rules)
    }
    assert used <= set(acl["operations"]["items"]["enum"])
    kafka = spec("Kafka")["kafka"]["properties"]
    assert "simple" in kafka["authorization"]["properties"]["type"]["enum"]
    listener = kafka["listeners"]["items"]["properties"]
    assert {"scram-sha-512", "tls"} <= set(listener["authentication"]["properties"]["type"]["enum"])
