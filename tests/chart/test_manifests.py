"""Every YAML under k8s/: Kubernetes objects schema-valid, the kind config a kind Cluster, values wired."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.chart.conftest import CHART, ROOT, schema_problems
from tests.chart.kube_schemas import Obj, Validator, load_file

K8S = ROOT / "k8s"
KIND_CONFIG = K8S / "kind-config.yaml"
VALUES = K8S / "values"
ALL_YAML = sorted(p for p in K8S.rglob("*") if p.suffix in (".yaml", ".yml"))
# A kustomize folder's files are its inputs, not objects to apply: checked rendered (test_kafka_sizing.py).
KUSTOMIZE = {p.parent for p in ALL_YAML if p.name == "kustomization.yaml"}
MANIFESTS = [
    p for p in ALL_YAML if p != KIND_CONFIG and VALUES not in p.parents and p.parent not in KUSTOMIZE
]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def objects(*names: str) -> list[Obj]:
    return [o for name in names for o in load_file(K8S / name)]


def test_every_yaml_file_is_accounted_for() -> None:
    assert KIND_CONFIG in ALL_YAML
    assert {p.name for p in VALUES.glob("*.yaml")} >= {
        "kube-prometheus-stack.yaml",
        "strimzi-operator.yaml",
        "login-stream.yaml",
        "tilt.yaml",
    }
    for path in MANIFESTS:
        docs = load_file(path)
        assert docs, f"{rel(path)} holds no object"
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"{rel(path)}: not a Kubernetes object"


@pytest.mark.parametrize("path", MANIFESTS, ids=rel)
def test_manifest_is_schema_valid(validator: Validator, path: Path) -> None:
    problems = schema_problems(load_file(path), validator)
    assert not problems, "\n".join(problems)


# --- kind ----------------------------------------------------------------------------------------------

# The kind.x-k8s.io/v1alpha4 Cluster type (sigs.k8s.io/kind pkg/apis/config/v1alpha4/types.go) as a
# strict JSON Schema: kind rejects unknown fields too.
_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "required": ["group", "version", "kind", "patch"],
    "properties": {k: {"type": "string"} for k in ("group", "version", "kind", "patch")},
}
_PORT = {"type": "integer", "minimum": 0, "maximum": 65535}
KIND_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "apiVersion"],
    "properties": {
        "kind": {"const": "Cluster"},
        "apiVersion": {"const": "kind.x-k8s.io/v1alpha4"},
        "name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
        "featureGates": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "runtimeConfig": {"type": "object", "additionalProperties": {"type": "string"}},
        "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
        "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH},
        "containerdConfigPatches": {"type": "array", "items": {"type": "string"}},
        "containerdConfigPatchesJSON6902": {"type": "array", "items": {"type": "string"}},
        "networking": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "ipFamily": {"enum": ["ipv4", "ipv6", "dual"]},
                "apiServerPort": _PORT,
                "apiServerAddress": {"type": "string"},
                "podSubnet": {"type": "string"},
                "serviceSubnet": {"type": "string"},
                "disableDefaultCNI": {"type": "boolean"},
                "kubeProxyMode": {"enum": ["iptables", "ipvs", "nftables", "none"]},
                "dnsSearch": {"type": "array", "items": {"type": "string"}},
            },
        },
        "nodes": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "role": {"enum": ["control-plane", "worker"]},
                    "image": {"type": "string"},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                    "kubeadmConfigPatches": {"type": "array", "items": {"type": "string"}},
                    "kubeadmConfigPatchesJSON6902": {"type": "array", "items": _PATCH},
                    "extraMounts": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "containerPath": {"type": "string"},
                                "hostPath": {"type": "string"},
                                "readOnly": {"type": "boolean"},
                                "selinuxRelabel": {"type": "boolean"},
                                "propagation": {"enum": ["None", "HostToContainer", "Bidirectional"]},
                            },
                        },
                    },
                    "extraPortMappings": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "containerPort": _PORT,
                                "hostPort": _PORT,
                                "listenAddress": {"type": "string"},
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                            },
                        },
                    },
                },
            },
        },
    },
}


def kind_config() -> Obj:
    (config,) = load_file(KIND_CONFIG)
    return config


def test_kind_config_is_a_kind_cluster() -> None:
    config = kind_config()
    jsonschema.validate(config, KIND_SCHEMA)
    assert config["name"] == "login-stream"
    assert [n["role"] for n in config["nodes"]].count("control-plane") == 1


def test_kind_schema_rejects_unknown_fields() -> None:
    config = kind_config()
    config["nodes"][0]["extraPortMapping"] = []
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(config, KIND_SCHEMA)


def test_kind_port_mappings_match_the_kafka_external_listener() -> None:
    mapped = {m["containerPort"] for n in kind_config()["nodes"] for m in n.get("extraPortMappings", [])}
    kafka = next(o for o in objects("kafka/kafka.yaml") if o["kind"] == "Kafka")
    (external,) = [lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["type"] == "nodeport"]
    ports = {external["configuration"]["bootstrap"]["nodePort"]}
    ports |= {b["nodePort"] for b in external["configuration"]["brokers"]}
    assert ports <= mapped
    for broker in external["configuration"]["brokers"]:
        assert broker["advertisedHost"] == "localhost"
        assert broker["advertisedPort"] == broker["nodePort"]


# --- Kafka ---------------------------------------------------------------------------------------------


def test_kafka_cluster() -> None:
    objs = objects("kafka/kafka.yaml")
    kafka = next(o for o in objs if o["kind"] == "Kafka")
    pools = [o for o in objs if o["kind"] == "KafkaNodePool"]
    name = kafka["metadata"]["name"]
    assert kafka["apiVersion"] == "kafka.strimzi.io/v1"
    assert kafka["spec"]["kafka"]["version"].startswith("4.3.")
    metrics = kafka["spec"]["kafka"]["metricsConfig"]["type"]
    assert metrics == "strimziMetricsReporter"  # the names dashboards/strimzi/ are written for
    # No Kafka Exporter (docs/kubernetes.md "Kafka metrics"): its panels could not be proven here; lag
    # comes from login_consumer_lag_messages.
    assert "kafkaExporter" not in kafka["spec"]
    assert "topicOperator" in kafka["spec"]["entityOperator"]
    roles = {r for p in pools for r in p["spec"]["roles"]}
    assert roles == {"controller", "broker"}  # KRaft: no ZooKeeper, controllers in a node pool
    for pool in pools:
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == name
        assert pool["metadata"]["namespace"] == kafka["metadata"]["namespace"]
    # the kind deployment's bootstrap address is this cluster's TLS listener (test_security_manifests.py)
    kind_values = yaml.safe_load((VALUES / "login-stream.yaml").read_text())
    tls = next(lst for lst in kafka["spec"]["kafka"]["listeners"] if lst["name"] == "tls")
    assert kind_values["kafka"]["bootstrapServers"] == f"{name}-kafka-bootstrap:{tls['port']}"


def test_topics() -> None:
    kafka = next(o for o in objects("kafka/kafka.yaml") if o["kind"] == "Kafka")
    topics = {t["metadata"]["name"]: t for t in objects("kafka/topics.yaml")}
    chart_values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart_topics = chart_values["kafka"]["topics"]
    # besides the chart's topics, the consumer's internal ones (<groupId>-...: tests/chart/test_stages.py)
    internal = {n for n in topics if n.startswith(f"{chart_values['consumer']['groupId']}-")}
    assert set(topics) - internal == set(chart_topics.values())
    assert topics[chart_topics["input"]]["spec"]["partitions"] >= 6
    for name, topic in topics.items():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        assert topic["metadata"]["namespace"] == kafka["metadata"]["namespace"]
        if name not in internal:
            assert int(topic["spec"]["config"]["retention.ms"]) > 0
    retention = {
        name: int(t["spec"]["config"]["retention.ms"]) for name, t in topics.items() if name not in internal
    }
    assert retention[chart_topics["dlq"]] >= retention[chart_topics["input"]]


def test_pod_monitors_carry_the_release_label() -> None:
    kps = yaml.safe_load((VALUES / "kube-prometheus-stack.yaml").read_text())
    assert kps["prometheus"]["prometheusSpec"]["podMonitorSelectorNilUsesHelmValues"] is True
    monitors = objects("monitoring/podmonitors.yaml")
    assert {m["metadata"]["name"] for m in monitors} >= {"kafka-resources-metrics"}
    for monitor in monitors:
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- values of the cluster's Helm releases ------------------------------------------------------------


def test_kube_prometheus_stack_values() -> None:
    values = yaml.safe_load((VALUES / "kube-prometheus-stack.yaml").read_text())
    sidecar = values["grafana"]["sidecar"]["dashboards"]
    assert sidecar["enabled"] is True
    assert (sidecar["label"], sidecar["labelValue"]) == ("grafana_dashboard", "1")
    assert sidecar["searchNamespace"] == "ALL"
    for scraper in ("kubeControllerManager", "kubeScheduler", "kubeEtcd", "kubeProxy"):
        assert values[scraper]["enabled"] is False, f"{scraper} is down on kind and must be off"
    spec = values["prometheus"]["prometheusSpec"]
    for kind in ("serviceMonitor", "podMonitor", "rule"):
        selector = f"{kind}NamespaceSelector"
        assert spec[selector] == {}, f"{selector}: every namespace"


def test_strimzi_operator_values() -> None:
    values = yaml.safe_load((VALUES / "strimzi-operator.yaml").read_text())
    kafka = next(o for o in objects("kafka/kafka.yaml") if o["kind"] == "Kafka")
    assert kafka["metadata"]["namespace"] in values["watchNamespaces"]
    # Strimzi 1.2.0's chart dashboards are the JMX exporter's (and of components not run): off; the
    # login-stream chart ships Kafka and KRaft dashboards for the metrics reporter (test_upstream.py).
    assert values["dashboards"] == {"enabled": False}


@pytest.mark.parametrize("name", ["login-stream.yaml", "tilt.yaml"])
def test_chart_values_files_match_the_chart_schema(name: str) -> None:
    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = yaml.safe_load((CHART / "values.yaml").read_text())
    for path in (VALUES / "login-stream.yaml", VALUES / name):
        merge(merged, yaml.safe_load(path.read_text()))
    jsonschema.validate(merged, schema)


def merge(base: dict[str, Any], extra: dict[str, Any]) -> None:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
