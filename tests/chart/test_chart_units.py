"""Unit tests of the chart over its rendered output: what each value switches on and off."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import ROOT, Render, RenderError, find, one, render_notes
from tests.chart.kube_schemas import Obj

CONSUMER = "login-stream-consumer"
PRODUCER = "login-stream-producer"


def container(deployment: Obj) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return dict(containers[0])


def env(deployment: Obj) -> dict[str, str]:
    """The container's env values (an entry set from the downward API shows as ``fieldRef:<path>``)."""
    return {
        e["name"]: e["value"] if "value" in e else f"fieldRef:{e['valueFrom']['fieldRef']['fieldPath']}"
        for e in container(deployment)["env"]
    }


# --- ServiceMonitor ----------------------------------------------------------------------------------


def test_service_monitor_off_by_default(render: Render) -> None:
    assert find(render(), "ServiceMonitor") == []


def test_service_monitor_on_with_additional_labels(render: Render) -> None:
    objs = render(**{"serviceMonitor.enabled": True, "serviceMonitor.additionalLabels.release": "kps"})
    monitor = one(objs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "kps"
    spec = monitor["spec"]
    assert spec["jobLabel"] == "app.kubernetes.io/name"
    [endpoint] = spec["endpoints"]
    assert {k: v for k, v in endpoint.items() if k != "relabelings"} == {
        "port": "metrics",
        "path": "/metrics",
        "interval": "15s",
        "scrapeTimeout": "10s",
    }
    # the consumer's group as a target label (tests/chart/test_alerting.py checks the relabeling itself)
    assert [r["targetLabel"] for r in endpoint["relabelings"]] == ["consumer_group"]
    # the selector picks exactly the two metrics Services, whose job names the alert rules use
    selected = [
        s
        for s in find(objs, "Service")
        if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]
    assert sorted(s["metadata"]["labels"]["app.kubernetes.io/name"] for s in selected) == [
        "login-consumer",
        "login-producer",
    ]
    for service in selected:
        assert [p["name"] for p in service["spec"]["ports"]] == ["metrics"]


def test_kind_values_wire_the_kube_prometheus_stack_release_label(render: Render) -> None:
    kps = yaml.safe_load((ROOT / "k8s/values/kube-prometheus-stack.yaml").read_text())
    assert kps["prometheus"]["prometheusSpec"]["serviceMonitorSelectorNilUsesHelmValues"] is True
    assert kps["prometheus"]["prometheusSpec"]["ruleSelectorNilUsesHelmValues"] is True
    objs = render(ROOT / "k8s/values/login-stream.yaml")
    assert one(objs, "ServiceMonitor")["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert one(objs, "PrometheusRule")["metadata"]["labels"]["release"] == "kube-prometheus-stack"


# --- metrics Services and ports ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "port"), [(CONSUMER, 8000), (PRODUCER, 8001)])
def test_metrics_service_targets_the_metrics_port(render: Render, name: str, port: int) -> None:
    objs = render()
    service = one(objs, "Service", name)
    deployment = one(objs, "Deployment", name)
    assert service["spec"]["ports"] == [
        {"name": "metrics", "port": port, "targetPort": "metrics", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert container(deployment)["ports"] == [{"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    assert env(deployment)["METRICS_PORT"] == str(port)


# --- probes, security, resources ---------------------------------------------------------------------


@pytest.mark.parametrize("name", [CONSUMER, PRODUCER])
def test_probes_on_healthz_and_ready(render: Render, name: str) -> None:
    c = container(one(render(), "Deployment", name))
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    assert c["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "metrics"}


@pytest.mark.parametrize("name", [CONSUMER, PRODUCER])
def test_security_context(render: Render, name: str) -> None:
    deployment = one(render(), "Deployment", name)
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    sc = container(deployment)["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    # a writable /tmp on the read-only root filesystem
    assert {"name": "tmp", "mountPath": "/tmp"} in container(deployment)["volumeMounts"]
    assert any(v["name"] == "tmp" and "emptyDir" in v for v in pod["volumes"])


def test_tilt_values_relax_only_the_read_only_root_filesystem(render: Render) -> None:
    objs = render(ROOT / "k8s/values/login-stream.yaml", ROOT / "k8s/values/tilt.yaml")
    sc = container(one(objs, "Deployment", CONSUMER))["securityContext"]
    assert sc["readOnlyRootFilesystem"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True
    assert find(objs, "Pod") == []  # no helm test pod for Tilt to run


@pytest.mark.parametrize("name", [CONSUMER, PRODUCER])
def test_resources_set(render: Render, name: str) -> None:
    resources = container(one(render(), "Deployment", name))["resources"]
    assert {"cpu", "memory"} <= resources["requests"].keys()
    assert "memory" in resources["limits"]


# --- configuration through env -----------------------------------------------------------------------


def test_configuration_through_env(render: Render) -> None:
    objs = render(
        **{
            "kafka.bootstrapServers": "k:9092",
            "kafka.topics.input": "in",
            "kafka.topics.output": "out",
            "kafka.topics.dlq": "dead",
            "consumer.groupId": "g",
            "consumer.processingGuarantee": "exactly-once",
            "consumer.env.BATCH_SIZE": "7",
            "logging.level": "DEBUG",
            "producer.rate": "12.5",
        }
    )
    consumer = env(one(objs, "Deployment", CONSUMER))
    assert consumer == {
        "BOOTSTRAP_SERVERS": "k:9092",
        "INPUT_TOPIC": "in",
        "OUTPUT_TOPIC": "out",
        "DLQ_TOPIC": "dead",
        "GROUP_ID": "g",
        "PROCESSING_GUARANTEE": "exactly-once",
        "COMMIT_INTERVAL_MS": "1000",
        "MAX_IN_FLIGHT": "20000",
        "AUTO_CREATE_INTERNAL_TOPICS": "true",
        "METRICS_PORT": "8000",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "DEBUG",
        "BATCH_SIZE": "7",
    }
    producer = env(one(objs, "Deployment", PRODUCER))
    assert producer["RATE"] == "12.5"
    assert producer["INPUT_TOPIC"] == "in"
    assert "GROUP_ID" not in producer


def test_tracing_off_by_default_sets_no_otel_variable(render: Render) -> None:
    objs = render()
    for name in (CONSUMER, PRODUCER):
        assert not [k for k in env(one(objs, "Deployment", name)) if k.startswith("OTEL_")]


@pytest.mark.parametrize("name", [CONSUMER, PRODUCER])
def test_tracing_endpoint_switches_both_services_on(render: Render, name: str) -> None:
    objs = render(**{"tracing.otlpEndpoint": "http://collector.obs:4318", "tracing.sampleRatio": 0.05})
    found = env(one(objs, "Deployment", name))
    assert {k: v for k, v in found.items() if k.startswith(("OTEL_", "POD_"))} == {
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.obs:4318",
        "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.05",
        "POD_NAME": "fieldRef:metadata.name",
        "POD_NAMESPACE": "fieldRef:metadata.namespace",
        # $(POD_NAMESPACE) is expanded by the kubelet: POD_NAMESPACE is defined before it
        "OTEL_RESOURCE_ATTRIBUTES": "k8s.namespace.name=$(POD_NAMESPACE),service.namespace=login-stream",
    }
    names = [e["name"] for e in container(one(objs, "Deployment", name))["env"]]
    assert names.index("POD_NAMESPACE") < names.index("OTEL_RESOURCE_ATTRIBUTES")


@pytest.mark.parametrize(
    ("endpoint", "protocol", "port"),
    [
        ("http://c.obs:14318", "http/protobuf", 14318),
        ("http://c.obs", "http/protobuf", 4318),
        ("http://c", "grpc", 4317),
    ],
)
def test_network_policy_lets_spans_out_to_the_endpoint_port(
    render: Render, endpoint: str, protocol: str, port: int
) -> None:
    objs = render(
        **{"networkPolicy.enabled": True, "tracing.otlpEndpoint": endpoint, "tracing.protocol": protocol}
    )
    egress = one(objs, "NetworkPolicy", "login-stream")["spec"]["egress"]
    assert {"ports": [{"port": port, "protocol": "TCP"}]} in egress
    plain = one(render(**{"networkPolicy.enabled": True}), "NetworkPolicy", "login-stream")["spec"]["egress"]
    assert len(egress) == len(plain) + 1


def test_image_references(render: Render) -> None:
    default = render()
    assert container(one(default, "Deployment", CONSUMER))["image"] == "login-consumer:0.1.0"
    objs = render(**{"image.registry": "ghcr.io/me/", "image.tag": "1.0", "producer.image.tag": "p1"})
    assert container(one(objs, "Deployment", CONSUMER))["image"] == "ghcr.io/me/login-consumer:1.0"
    assert container(one(objs, "Deployment", PRODUCER))["image"] == "ghcr.io/me/login-producer:p1"


# --- replicas and KEDA -------------------------------------------------------------------------------


def test_replicas(render: Render) -> None:
    objs = render(**{"consumer.replicas": 4, "producer.replicas": 2})
    assert one(objs, "Deployment", CONSUMER)["spec"]["replicas"] == 4
    assert one(objs, "Deployment", PRODUCER)["spec"]["replicas"] == 2


def test_consumer_replicas_may_not_exceed_partitions(render: Render) -> None:
    assert one(render(**{"consumer.replicas": 6}), "Deployment", CONSUMER)["spec"]["replicas"] == 6
    with pytest.raises(RenderError, match=r"exceeds kafka\.inputPartitions"):
        render(**{"consumer.replicas": 7})
    assert one(render(**{"consumer.replicas": 7, "kafka.inputPartitions": 8}), "Deployment", CONSUMER)


def test_kind_values_match_the_input_topic_partitions(render: Render) -> None:
    values = yaml.safe_load((ROOT / "k8s/values/login-stream.yaml").read_text())
    topics = yaml.safe_load_all((ROOT / "k8s/kafka/topics.yaml").read_text())
    partitions = {t["metadata"]["name"]: t["spec"]["partitions"] for t in topics}
    assert values["kafka"]["inputPartitions"] == partitions["user-login"]


def test_keda_off_by_default(render: Render) -> None:
    objs = render()
    assert find(objs, "ScaledObject") == []
    assert one(objs, "Deployment", CONSUMER)["spec"]["replicas"] == 2


def test_keda_on_scales_the_consumer_on_lag(render: Render) -> None:
    objs = render(**{"keda.enabled": True, "keda.maxReplicas": 6, "keda.lagThreshold": 500})
    scaled = one(objs, "ScaledObject")
    assert scaled["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": CONSUMER,
    }
    assert scaled["spec"]["maxReplicaCount"] == 6
    trigger = scaled["spec"]["triggers"][0]  # the user stage's; every stage: test_stages.py
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["consumerGroup"] == "login-consumer"
    assert trigger["metadata"]["topic"] == "user-login"
    assert trigger["metadata"]["lagThreshold"] == "500"
    # KEDA owns the replica count: helm must not reset it on upgrade
    assert "replicas" not in one(objs, "Deployment", CONSUMER)["spec"]
    with pytest.raises(RenderError, match=r"keda.maxReplicas \(7\) exceeds"):
        render(**{"keda.enabled": True, "keda.maxReplicas": 7})


# --- PodDisruptionBudget, NetworkPolicy --------------------------------------------------------------


def test_pod_disruption_budget(render: Render) -> None:
    objs = render()
    pdb = one(objs, "PodDisruptionBudget", CONSUMER)
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = one(objs, "Deployment", CONSUMER)["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert find(render(**{"consumer.pdb.enabled": False}), "PodDisruptionBudget") == []


def test_network_policy_off_by_default(render: Render) -> None:
    assert find(render(), "NetworkPolicy") == []


def test_network_policy_on(render: Render) -> None:
    objs = render(**{"networkPolicy.enabled": True})
    policy = one(objs, "NetworkPolicy")["spec"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"}
    # it selects every pod of the release: both Deployments and the helm test pod
    pods = [d["spec"]["template"]["metadata"]["labels"] for d in find(objs, "Deployment")]
    pods.append(one(objs, "Pod")["metadata"]["labels"])
    for labels in pods:
        assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    ingress_ports = {p["port"] for rule in policy["ingress"] for p in rule["ports"]}
    assert ingress_ports == {8000, 8001}
    egress_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]}
    assert egress_ports == {53, 9092, 8000, 8001}
    kafka_rule = next(r for r in policy["egress"] if any(p["port"] == 9092 for p in r["ports"]))
    assert kafka_rule["to"] == [{"podSelector": {"matchLabels": {"strimzi.io/cluster": "login-stream"}}}]


# --- dashboards and alert rules: exactly the repository's files --------------------------------------


def test_dashboards_ship_without_drift(render: Render) -> None:
    """dashboards/*.json to folder login-stream; dashboards/strimzi/*.json (the Kafka cluster's) to folder
    strimzi, the folder Strimzi's own dashboards used (k8s/values/strimzi-operator.yaml before 1.2.0's
    JMX-exporter dashboards were switched off)."""
    folders = {"login-stream": ROOT / "dashboards", "strimzi": ROOT / "dashboards" / "strimzi"}
    files = {
        folder: {p.name: p.read_text() for p in sorted(path.glob("*.json"))}
        for folder, path in folders.items()
    }
    assert all(files.values()), f"a dashboards folder is empty: {files.keys()}"
    maps = [m for m in find(render(), "ConfigMap") if "grafana_dashboard" in m["metadata"].get("labels", {})]
    shipped: dict[str, dict[str, str]] = {folder: {} for folder in folders}
    for cm in maps:
        assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
        shipped[cm["metadata"]["annotations"]["grafana_folder"]].update(cm["data"])
    assert shipped == files  # byte for byte, each in its folder, and no dashboard more or less
    for folder in shipped.values():
        for name, text in folder.items():
            json.loads(text)
            # a ConfigMap holds at most 1 MiB; client-side apply (Tilt) also copies it into a 256 KiB
            # annotation
            assert len(text.encode()) < 250 * 1024, f"{name} is too large to ship as a ConfigMap"
    without_kafka = render(**{"dashboards.kafka.enabled": False})
    folders_left = {
        m["metadata"]["annotations"]["grafana_folder"]
        for m in find(without_kafka, "ConfigMap")
        if "grafana_dashboard" in m["metadata"].get("labels", {})
    }
    assert folders_left == {"login-stream"}


def test_dashboards_namespace_and_switch(render: Render) -> None:
    objs = render(**{"dashboards.namespace": "monitoring"})
    maps = [m for m in find(objs, "ConfigMap") if "grafana_dashboard" in m["metadata"].get("labels", {})]
    assert maps
    assert {m["metadata"]["namespace"] for m in maps} == {"monitoring"}
    off = render(**{"dashboards.enabled": False})
    assert not [m for m in find(off, "ConfigMap") if "grafana_dashboard" in m["metadata"].get("labels", {})]


def test_prometheus_rule_is_the_rules_file(render: Render) -> None:
    assert find(render(), "PrometheusRule") == []
    rules = yaml.safe_load((ROOT / "monitoring/rules/login-stream.rules.yaml").read_text())
    rule = one(render(**{"prometheusRule.enabled": True}), "PrometheusRule")
    assert rule["spec"] == {"groups": rules["groups"]}


def test_chart_links_point_at_the_repository_sources() -> None:
    chart = ROOT / "charts" / "login-stream"
    assert (chart / "dashboards").is_symlink()
    assert (chart / "dashboards").resolve() == (ROOT / "dashboards").resolve()
    assert (chart / "rules").is_symlink()
    assert (chart / "rules").resolve() == (ROOT / "monitoring" / "rules").resolve()


# --- helm test hook ----------------------------------------------------------------------------------


def test_helm_test_hook(render: Render) -> None:
    objs = render()
    pod = one(objs, "Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["restartPolicy"] == "Never"
    c = pod["spec"]["containers"][0]
    assert c["image"] == "login-consumer:0.1.0"
    assert c["command"] == ["python", "/check/pipeline_check.py"]
    assert c["args"][0] == "check"
    assert "--dlq" in c["args"]
    assert f"--ready-url=http://{CONSUMER}:8000/ready" in c["args"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    script = one(objs, "ConfigMap", "login-stream-pipeline-check")
    assert "helm.sh/hook" not in script["metadata"].get("annotations", {})  # see test_upstream.py
    source = (ROOT / "charts/login-stream/files/pipeline_check.py").read_text()
    assert script["data"]["pipeline_check.py"] == source.rstrip("\n")
    assert find(render(**{"tests.enabled": False}), "Pod") == []


# --- values.schema.json ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        {"consumer.replicas": "many"},
        {"consumer.processingGuarantee": "maybe"},
        {"kafka.bootstrapServers": "no-port"},
        {"logging.level": "LOUD"},
        {"serviceMonitor.interval": "often"},
        {"unknownTopLevel": "x"},
        {"consumer.env.not-a-name": "x"},
        {"tracing.protocol": "zipkin"},
        {"tracing.sampleRatio": "2"},
        {"tracing.otlpEndpoint": "collector:4318"},
    ],
)
def test_values_schema_rejects(render: Render, bad: dict[str, object]) -> None:
    with pytest.raises(RenderError, match="schema"):
        render(**bad)


def test_components_can_be_switched_off(render: Render) -> None:
    objs = render(**{"producer.enabled": False})
    assert [d["metadata"]["name"] for d in find(objs, "Deployment")] == [CONSUMER]
    assert [s["metadata"]["name"] for s in find(objs, "Service")] == [CONSUMER]
    pod = one(objs, "Pod")
    assert not any("producer" in a for a in pod["spec"]["containers"][0]["args"])


def test_every_object_names_the_release_namespace(render: Render) -> None:
    # `helm template | kubectl apply` and Tilt apply the objects as rendered: each must carry its namespace
    for obj in render("ci/full-values.yaml"):
        expected = (
            "monitoring" if "grafana_dashboard" in obj["metadata"].get("labels", {}) else "login-stream"
        )
        assert obj["metadata"].get("namespace") == expected, obj["metadata"]["name"]


def test_notes_render_runnable_commands(helm: str, tmp_path: Path) -> None:
    notes = render_notes(helm, tmp_path)
    assert "helm test login-stream -n login-stream --logs" in notes
    assert "kubectl -n login-stream rollout status deployment/login-stream-consumer" in notes
    assert "port-forward svc/login-stream-consumer 8000:8000" in notes
    assert "scale deployment/login-stream-consumer --replicas=3" in notes
    assert "kube-prometheus-stack-grafana" in notes
