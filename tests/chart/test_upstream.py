"""The Kubernetes path read against the upstream sources it configures, at the versions the project pins.

Nothing here runs a cluster. Each check holds what was read upstream (a table or a constant, with its
source: repository, file, version) and checks the project's files against it: what a real cluster would
otherwise reveal on the first `make cluster`, `make helm-test`, `make up` or push. docs/kubernetes.md
("Checked against upstream") lists the same sources, for the next upgrade of a pinned version.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from tests.chart.conftest import CHART, NAMESPACE, ROOT, Render, find, render_notes
from tests.chart.kube_schemas import Obj, load_file
from tests.chart.test_tiltfile import run_tiltfile
from tests.observability import queries

K8S = ROOT / "k8s"
VALUES = K8S / "values"
WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def kafka_objects() -> tuple[Obj, list[Obj]]:
    objs = load_file(K8S / "kafka" / "kafka.yaml")
    return next(o for o in objs if o["kind"] == "Kafka"), [o for o in objs if o["kind"] == "KafkaNodePool"]


def make_var(name: str) -> str:
    """A variable's default in mk/k8s.mk (``NAME ?= value``)."""
    match = re.search(rf"^{name}\s*\?=\s*(\S+)", (ROOT / "mk" / "k8s.mk").read_text(), re.MULTILINE)
    assert match, f"{name} not found in mk/k8s.mk"
    return match[1]


def make_dry_run(*args: str) -> list[str]:
    """The commands `make -n -B <args>` would run (every prerequisite included), one per line."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS")}
    out = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.returncode == 0, f"make -n {' '.join(args)}:\n{out.stderr}"
    return out.stdout.splitlines()


# --- Strimzi 1.2.0: the pods it creates, their labels and ports --------------------------------------
# strimzi-kafka-operator 1.2.0:
#   operator-common/src/main/java/io/strimzi/operator/common/model/Labels.java (generateDefaultLabels:
#     strimzi.io/{kind,name,cluster,component-type}, app.kubernetes.io/name = component type,
#     app.kubernetes.io/instance = the Kafka's name, part-of = "strimzi-" + the Kafka's name,
#     managed-by = strimzi-cluster-operator)
#   cluster-operator/.../model/KafkaPool.java (node-pool pods: strimzi.io/name = <kafka>-kafka,
#     strimzi.io/pool-name) and KafkaCluster.java (strimzi.io/broker-role, strimzi.io/controller-role;
#     container ports tcp-ctrlplane 9090, tcp-replication 9091, tcp-<listener> per listener)
#   cluster-operator/.../model/metrics/MetricsModel.java (METRICS_PORT_NAME tcp-prometheus, 9404)
#   cluster-operator/.../model/EntityOperator.java (component type entity-operator),
#   EntityTopicOperator.java (port healthcheck-to), EntityUserOperator.java (port healthcheck-uo)
#   helm-charts/helm3/strimzi-kafka-operator/templates/060-Deployment-strimzi-cluster-operator.yaml
#     (pod labels name: strimzi-cluster-operator, strimzi.io/kind: cluster-operator; port http 8080)
# packaging/examples/metrics/prometheus-install/pod-monitors/*.yaml of the same tag scrape these ports.


@dataclass(frozen=True)
class Pod:
    name: str
    namespace: str
    labels: dict[str, str]
    ports: frozenset[str] = field(default_factory=frozenset)


def strimzi_pods() -> list[Pod]:
    """The pods Strimzi 1.2.0 runs for k8s/kafka/kafka.yaml, and its cluster operator's pod."""
    kafka, pools = kafka_objects()
    name, namespace, spec = kafka["metadata"]["name"], kafka["metadata"]["namespace"], kafka["spec"]

    def labels(component: str, component_type: str) -> dict[str, str]:
        return {
            "strimzi.io/kind": "Kafka",
            "strimzi.io/name": component,
            "strimzi.io/cluster": name,
            "strimzi.io/component-type": component_type,
            "app.kubernetes.io/name": component_type,
            "app.kubernetes.io/instance": name,
            "app.kubernetes.io/part-of": f"strimzi-{name}",
            "app.kubernetes.io/managed-by": "strimzi-cluster-operator",
        }

    pods = []
    listener_ports = {f"tcp-{listener['name']}" for listener in spec["kafka"]["listeners"]}
    metrics = {"tcp-prometheus"} if spec["kafka"].get("metricsConfig") else set()
    for pool in pools:
        roles = pool["spec"]["roles"]
        for node in range(pool["spec"]["replicas"]):
            pool_name = pool["metadata"]["name"]
            pods.append(
                Pod(
                    f"{name}-{pool_name}-{node}",
                    namespace,
                    labels(f"{name}-kafka", "kafka")
                    | {
                        "strimzi.io/pool-name": pool_name,
                        "strimzi.io/broker-role": str("broker" in roles).lower(),
                        "strimzi.io/controller-role": str("controller" in roles).lower(),
                        "strimzi.io/pod-name": f"{name}-{pool_name}-{node}",
                    },
                    frozenset({"tcp-ctrlplane", "tcp-replication", *listener_ports, *metrics}),
                )
            )
    operators = spec.get("entityOperator", {})
    ports = {"healthcheck-to"} if "topicOperator" in operators else set()
    ports |= {"healthcheck-uo"} if "userOperator" in operators else set()
    if ports:
        component = f"{name}-entity-operator"
        pods.append(Pod(component, namespace, labels(component, "entity-operator"), frozenset(ports)))
    operator_ns = make_var("STRIMZI_NS")
    operator_labels = {"name": "strimzi-cluster-operator", "strimzi.io/kind": "cluster-operator"}
    pods.append(Pod("strimzi-cluster-operator", operator_ns, operator_labels, frozenset({"http"})))
    return pods


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels + matchExpressions) against a label set."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        if (
            (op == "In" and labels.get(key) not in values)
            or (op == "NotIn" and labels.get(key) in values)
            or (op == "Exists" and key not in labels)
            or (op == "DoesNotExist" and key in labels)
        ):
            return False
    return True


def test_the_selector_semantics() -> None:
    labels = {"a": "1", "b": "2"}
    assert selects({"matchLabels": {"a": "1"}}, labels)
    assert not selects({"matchLabels": {"a": "1", "c": "3"}}, labels)
    assert selects({"matchExpressions": [{"key": "b", "operator": "In", "values": ["2", "3"]}]}, labels)
    assert not selects({"matchExpressions": [{"key": "c", "operator": "Exists"}]}, labels)
    assert selects({}, labels)  # an empty selector selects everything


# --- 2. PodMonitors --------------------------------------------------------------------------------


def pod_monitors() -> list[Obj]:
    return [o for o in load_file(K8S / "monitoring" / "podmonitors.yaml") if o["kind"] == "PodMonitor"]


@pytest.mark.parametrize("monitor", pod_monitors(), ids=lambda m: m["metadata"]["name"])
def test_pod_monitor_selects_strimzi_pods_on_their_port_names(monitor: Obj) -> None:
    """Strimzi 1.2.0's port names (table above): the entity operator's are healthcheck-to/-uo, not
    healthcheck; a port no selected pod has yields no target, and no error anywhere."""
    spec = monitor["spec"]
    namespaces = spec["namespaceSelector"]["matchNames"]
    selected = [
        p for p in strimzi_pods() if p.namespace in namespaces and selects(spec["selector"], p.labels)
    ]
    assert selected, f"{monitor['metadata']['name']} selects no Strimzi pod"
    possible = (
        {"healthcheck-to", "healthcheck-uo"} if "entity-operator" in monitor["metadata"]["name"] else set()
    )
    ports = set().union(*(p.ports for p in selected)) | possible
    endpoints = [e["port"] for e in spec["podMetricsEndpoints"]]
    assert set(endpoints) <= ports, f"ports no selected pod has: {set(endpoints) - ports}"
    assert set(endpoints) & set().union(*(p.ports for p in selected)), "no endpoint scrapes a running pod"


def test_the_kafka_dashboards_labels_come_from_the_pod_monitor() -> None:
    """dashboards/strimzi/ filter on namespace, strimzi_io_cluster and kubernetes_pod_name: the Kafka
    PodMonitor's relabelings must make them (the local test's scrape job carries the same names)."""
    monitor = next(m for m in pod_monitors() if m["metadata"]["name"] == "kafka-resources-metrics")
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    kafka_pod = next(p for p in strimzi_pods() if p.labels.get("strimzi.io/component-type") == "kafka")
    made: set[str] = set()
    for rule in endpoint["relabelings"]:
        if rule.get("action") == "labelmap":
            source = re.compile(rule["regex"])
            for label in kafka_pod.labels:
                meta = "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)
                if match := source.fullmatch(meta):
                    made.add(match.expand(rule["replacement"].replace("$1", r"\1")))
        elif "targetLabel" in rule:
            made.add(rule["targetLabel"])
    used = {"namespace", "strimzi_io_cluster", "kubernetes_pod_name"}
    for path in queries.DASHBOARDS.glob("strimzi/*.json"):
        text = path.read_text()
        assert all(f"{label}=~" in text for label in used), path.name
    assert used <= made
    from tests.observability.scripts import load

    assert used <= set(load("local_prometheus").LOCAL_KAFKA_LABELS)


# --- 3. the Kafka dashboards: Strimzi's are the JMX exporter's; ours are the reporter's -------------
# strimzi-kafka-operator 1.2.0 helm-charts/helm3/strimzi-kafka-operator/templates/
# 090-ConfigMap-strimzi-grafana-dashboards.yaml ships every files/grafana-dashboards/*.json when
# dashboards.enabled: the JMX Prometheus exporter's names (kafka_server_brokertopicmetrics_bytesin_total
# ...), and Bridge, Connect, MirrorMaker 2, Cruise Control and OAuth dashboards.
STRIMZI_CHART_DASHBOARDS = {
    "strimzi-cruise-control.json", "strimzi-kafka-bridge.json", "strimzi-kafka-connect.json",
    "strimzi-kafka-exporter.json", "strimzi-kafka-mirror-maker-2.json", "strimzi-kafka-oauth.json",
    "strimzi-kafka.json", "strimzi-kraft.json", "strimzi-operators.json",
}  # fmt: skip
# cluster-operator/.../model/KafkaCluster.java DEFAULT_METRICS_ALLOW_LIST (the reporter's allow list)
STRIMZI_ALLOW_LIST = (
    "kafka_cluster_partition.*", "kafka_controller_kafkacontroller.*",
    "kafka_controller_controllerstats_uncleanleaderelectionspersec", "kafka_log_log_size",
    "kafka_network_requestmetrics.*", "kafka_network_socketserver_networkprocessoravgidlepercent",
    "kafka_server_app_info.*", "kafka_server_brokertopicmetrics.*",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
    "kafka_server_kafkaserver_brokerstate",
    "kafka_server_kafkaserver_clusterid", "kafka_server_kafkaserver_linux.*", "kafka_server_raft.*",
    "kafka_server_replicamanager.*", "kafka_server_request_queue_size", "kafka_server_socket_server.*",
)  # fmt: skip
# KafkaBrokerConfigurationBuilder.java (withStrimziMetricsReporter, printMetricReporters,
# printYammerReporters): the broker settings Strimzi writes for metricsConfig.type strimziMetricsReporter.
STRIMZI_REPORTER_KEYS = {
    "metric.reporters",
    "kafka.metrics.reporters",
    "prometheus.metrics.reporter.listener.enable",
    "prometheus.metrics.reporter.listener",
    "prometheus.metrics.reporter.allowlist",
}


def test_strimzi_chart_dashboards_are_off_and_ours_ship_to_its_folder(render: Render) -> None:
    values = yaml.safe_load((VALUES / "strimzi-operator.yaml").read_text())
    assert values["dashboards"]["enabled"] is False, f"would install {sorted(STRIMZI_CHART_DASHBOARDS)}"
    kafka, _ = kafka_objects()
    assert kafka["spec"]["kafka"]["metricsConfig"]["type"] == "strimziMetricsReporter"
    ours = {
        m["data"].popitem()[0]
        for m in find(render(str(VALUES / "login-stream.yaml")), "ConfigMap")
        if m["metadata"].get("annotations", {}).get("grafana_folder") == "strimzi"
    }
    assert ours == {"kafka.json", "kraft.json"}


def test_the_kafka_dashboards_query_only_what_the_cluster_serves() -> None:
    """Every Kafka metric the dashboards query passes Strimzi's default allow list (the cluster would
    drop the others); JVM and process metrics the reporter serves besides."""
    allowed = [re.compile(r) for r in STRIMZI_ALLOW_LIST]
    from tests.observability.test_dashboards import base_name, metric_names

    names: set[str] = set()
    for path in queries.DASHBOARDS.glob("strimzi/*.json"):
        for panel in queries.iter_panels(queries.load_dashboard(path)):
            names |= {n for t in panel["targets"] for n in metric_names(t["expr"])}
    assert names
    for name in names:
        if name.startswith(("jvm_", "process_")):
            continue
        bare = base_name(re.sub(r"_total$", "", name))
        assert any(r.fullmatch(bare) or r.fullmatch(re.sub(r"_info$", "", bare)) for r in allowed), name


def test_the_local_broker_configures_the_reporter_as_strimzi_does() -> None:
    from tests.observability.scripts import load

    lk = load("local_kafka")
    config = dict(line.split("=", 1) for line in lk.metrics_reporter_config())
    assert set(config) == STRIMZI_REPORTER_KEYS
    assert tuple(config["prometheus.metrics.reporter.allowlist"].split(",")) == STRIMZI_ALLOW_LIST
    # Strimzi 1.2.0 ships io.strimzi:server-metrics-reporter 0.4.0 (docker-images/artifacts/
    # kafka-thirdparty-libs/4.3.x/pom.xml), not served by Maven Central here. 0.2.0 (one artifact,
    # io.strimzi:metrics-reporter) names metrics with the same code (YammerMetricWrapper.prometheusName,
    # KafkaMetricWrapper.prometheusName, YammerCollector's types: meter -> counter, timer -> summary):
    # its classes are the ones configured.
    assert lk.REPORTER_VERSION == "0.2.0"
    assert config["metric.reporters"] == "io.strimzi.kafka.metrics.KafkaPrometheusMetricsReporter"
    assert config["kafka.metrics.reporters"] == "io.strimzi.kafka.metrics.YammerPrometheusMetricsReporter"
    pom = (ROOT / "tools" / "kafka" / "pom.xml").read_text()
    assert f"<strimzi.metrics.reporter.version>{lk.REPORTER_VERSION}<" in pom
    assert "<artifactId>metrics-reporter</artifactId>" in pom


def test_kafka_version_is_one_strimzi_supports() -> None:
    """strimzi-kafka-operator 1.2.0 kafka-versions.yaml: 4.3.1 (metadata 4.3-IV0) supported, the default.
    The local broker runs the same Kafka."""
    kafka, _ = kafka_objects()
    assert (kafka["spec"]["kafka"]["version"], kafka["spec"]["kafka"]["metadataVersion"]) == (
        "4.3.1",
        "4.3-IV0",
    )
    from tests.observability.scripts import load

    assert kafka["spec"]["kafka"]["version"] == load("local_kafka").KAFKA_VERSION


# --- 4. Services in another namespace: cluster DNS names -------------------------------------------


def services() -> dict[str, str]:
    """Service name -> namespace, of every Service the project's objects may name."""
    kafka, _ = kafka_objects()
    name, ns = kafka["metadata"]["name"], kafka["metadata"]["namespace"]
    monitoring = make_var("MONITORING_NS")
    # Strimzi 1.2.0 KafkaResources: <kafka>-kafka-bootstrap, <kafka>-kafka-brokers.
    found = {f"{name}-kafka-bootstrap": ns, f"{name}-kafka-brokers": ns}
    # kube-prometheus-stack 88.2.0, release kube-prometheus-stack: Grafana and Prometheus Services.
    found |= {"kube-prometheus-stack-grafana": monitoring, "kube-prometheus-stack-prometheus": monitoring}
    for path in sorted(K8S.rglob("*.yaml")):
        for obj in load_file(path):
            if obj.get("kind") == "Service":
                found[obj["metadata"]["name"]] = obj["metadata"].get("namespace", ns)
    return found


ADDRESS = re.compile(r"(?<![\w.-])([a-z0-9][a-z0-9-]*(?:\.[a-z0-9-]+)*):(\d+)\b")


def addresses(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """(path, host) of every host:port in the strings of a YAML tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from addresses(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from addresses(v, f"{path}[{i}]")
    elif isinstance(value, str):
        for match in ADDRESS.finditer(value):
            yield path, match[1]


def used_from(obj: Obj, path: str) -> str:
    """The namespace whose pods resolve an address found in ``obj`` at ``path``: KEDA's scalers run in
    the keda-operator pod (KEDA 2.20.2 pkg/scalers/kafka_scaler.go dials bootstrapServers itself)."""
    if obj["kind"] == "ScaledObject" and ".triggers" in path:
        return make_var("KEDA_NS")
    return str(obj["metadata"].get("namespace", NAMESPACE))


def test_services_in_another_namespace_are_named_by_cluster_dns(render: Render) -> None:
    known = services()
    objs = [o for p in sorted(K8S.rglob("*.yaml")) for o in load_file(p) if "kind" in o and "metadata" in o]
    objs += render(str(VALUES / "login-stream.yaml"), **{"keda.enabled": True, "networkPolicy.enabled": True})
    problems, checked = [], 0
    for obj in objs:
        for path, host in addresses(obj):
            service = host.split(".")[0]
            if service not in known:
                continue
            checked += 1
            ns, where = known[service], used_from(obj, path)
            if ns != where and not re.fullmatch(rf"{service}\.{ns}\.svc(\.[a-z0-9.-]+)?", host):
                problems.append(f"{obj['kind']}/{obj['metadata']['name']}{path}: {host} used from {where}")
    # the values files of the releases, used from each release's namespace (mk/k8s.mk)
    release_ns = {
        "login-stream.yaml": make_var("APP_NS"),
        "tilt.yaml": make_var("APP_NS"),
        "real-node.yaml": make_var("APP_NS"),  # an overlay of the app release (tests/real_node)
        "kube-prometheus-stack.yaml": make_var("MONITORING_NS"),
        "strimzi-operator.yaml": make_var("STRIMZI_NS"),
        "keda.yaml": make_var("KEDA_NS"),
    }
    assert {p.name for p in VALUES.glob("*.yaml")} == set(release_ns)
    for name, where in release_ns.items():
        for path, host in addresses(yaml.safe_load((VALUES / name).read_text())):
            service = host.split(".")[0]
            if (
                service in known
                and known[service] != where
                and not host.startswith(f"{service}.{known[service]}.svc")
            ):
                problems.append(f"k8s/values/{name}{path}: {host} used from {where}")
    assert checked >= 3
    assert not problems, "short names of Services in another namespace:\n" + "\n".join(problems)


def test_keda_trigger_uses_only_keys_the_kafka_scaler_reads(render: Render) -> None:
    """KEDA 2.20.2 pkg/scalers/kafka_scaler.go kafkaMetadata (`keda:"name=..."` tags)."""
    scaler_keys = {
        "bootstrapServers", "consumerGroup", "topic", "partitionLimitation", "lagThreshold",
        "activationLagThreshold", "offsetResetPolicy", "allowIdleConsumers", "excludePersistentLag",
        "scaleToZeroOnInvalidOffset", "limitToPartitionsWithLag", "ensureEvenDistributionOfPartitions",
        "version", "tls", "unsafeSsl", "sasl", "saslTokenProvider",
    }  # fmt: skip
    (scaled,) = find(render(**{"keda.enabled": True}), "ScaledObject")
    assert len(scaled["spec"]["triggers"]) == 2  # one per stage: tests/chart/test_stages.py
    for trigger in scaled["spec"]["triggers"]:
        assert trigger["type"] == "kafka"
        assert set(trigger["metadata"]) <= scaler_keys
        assert trigger["metadata"]["bootstrapServers"] == "login-stream-kafka-bootstrap.login-stream.svc:9092"
    override = render(**{"keda.enabled": True, "keda.bootstrapServers": "kafka.example:9093"})
    for trigger in find(override, "ScaledObject")[0]["spec"]["triggers"]:
        assert trigger["metadata"]["bootstrapServers"] == "kafka.example:9093"


# --- 7. the release's selectors never select Strimzi's pods ----------------------------------------


def chart_selectors(objs: list[Obj], kafka_peers: list[Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for obj in objs:
        spec, name = obj.get("spec", {}), f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["kind"] in ("Deployment", "PodDisruptionBudget", "ServiceMonitor"):
            yield name, spec["selector"]
        elif obj["kind"] == "Service":
            yield name, {"matchLabels": spec["selector"]}
        elif obj["kind"] == "NetworkPolicy":
            yield name, spec["podSelector"]
            for rule in spec.get("ingress", []) + spec.get("egress", []):
                peers = rule.get("from", rule.get("to", []))
                if peers == kafka_peers:
                    continue  # the one rule meant for Kafka's pods (test_network_policy_reaches_kafka)
                for peer in peers:
                    if "podSelector" in peer:
                        yield f"{name} peer", peer["podSelector"]


def label_selector(arg: str) -> dict[str, Any]:
    return {"matchLabels": dict(item.split("=", 1) for item in arg.split(","))}


def test_no_selector_of_the_release_selects_strimzi_pods(render: Render, helm: str, tmp_path: Path) -> None:
    """Strimzi labels its pods app.kubernetes.io/instance=<Kafka name>, and the Kafka has the release's
    name: selectors by instance alone pick up the broker, entity operator (and exporter) pods."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    objs = render(str(VALUES / "login-stream.yaml"), **{"keda.enabled": True, "networkPolicy.enabled": True})
    selectors = list(chart_selectors(objs, values["networkPolicy"]["kafkaPeers"]))
    notes = render_notes(helm, tmp_path)
    selectors += [("NOTES.txt", label_selector(s)) for s in re.findall(r" -l (\S+)", notes)]
    made = " ".join(make_dry_run("k8s-logs", "k8s-health"))
    selectors += [("make k8s-logs/k8s-health", label_selector(s)) for s in re.findall(r" -l (\S+)", made)]
    assert len(selectors) >= 10
    pods = strimzi_pods()
    wrong = [f"{what} selects {p.name}" for what, sel in selectors for p in pods if selects(sel, p.labels)]
    assert not wrong, "\n".join(wrong)
    # and the release's own pods are selected by what is meant to select them
    app = [d["spec"]["template"]["metadata"]["labels"] for d in find(objs, "Deployment")]
    policy = find(objs, "NetworkPolicy")[0]["spec"]["podSelector"]
    assert all(selects(policy, labels) for labels in app)
    assert all(selects(label_selector(s), labels) for s in re.findall(r" -l (\S+)", notes) for labels in app)


def test_network_policy_reaches_kafka(render: Render) -> None:
    """The one egress rule meant for Kafka selects the broker pods, on the port the services dial."""
    objs = render(str(VALUES / "login-stream.yaml"), **{"networkPolicy.enabled": True})
    values = yaml.safe_load((CHART / "values.yaml").read_text())["networkPolicy"]
    brokers = [p for p in strimzi_pods() if p.labels.get("strimzi.io/broker-role") == "true"]
    for peer in values["kafkaPeers"]:
        assert all(selects(peer["podSelector"], p.labels) for p in brokers)
    (policy,) = find(objs, "NetworkPolicy")
    kafka_ports = {
        port["port"]
        for rule in policy["spec"]["egress"]
        if rule["to"] == values["kafkaPeers"]
        for port in rule["ports"]
    }
    env = {
        e["name"]: e.get("value")
        for e in find(objs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    dialled = {int(address.rsplit(":", 1)[1]) for address in env["BOOTSTRAP_SERVERS"].split(",")}
    kafka, _ = kafka_objects()
    listeners = {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"]}
    assert dialled <= listeners
    assert dialled <= kafka_ports


def test_notes_follow_every_pod_within_kubectls_log_request_limit(helm: str, tmp_path: Path) -> None:
    """kubectl logs -l follows at most --max-log-requests streams (default 5)."""
    notes = render_notes(helm, tmp_path, "keda.enabled=true", "keda.maxReplicas=6")
    limits = re.findall(r"--max-log-requests (\d+)", notes)
    assert limits, "NOTES.txt: kubectl logs -l without --max-log-requests (kubectl's default: 5 streams)"
    assert int(limits[0]) >= 6 + 1 + 1  # consumers at KEDA's maximum, the producer, the helm test pod


# --- 6. helm test --logs ---------------------------------------------------------------------------
# helm v3.22.0 pkg/action/release_testing.go GetPodLogs: for every hook with the test event, in weight
# order, it streams the logs of a Pod of the hook's name and returns the first error, which hides the
# test's own result (cmd/helm/release_testing.go). pkg/action/hooks.go deletes hook-succeeded hooks
# right after they succeed, before the logs are read.


def test_every_test_hook_is_a_pod_whose_logs_survive(render: Render) -> None:
    hooks = [o for o in render() if "test" in o["metadata"].get("annotations", {}).get("helm.sh/hook", "")]
    assert hooks
    for hook in hooks:
        name = f"{hook['kind']}/{hook['metadata']['name']}"
        assert hook["kind"] == "Pod", f"{name} is a test hook: helm test --logs fails on it"
        policy = hook["metadata"]["annotations"].get("helm.sh/hook-delete-policy", "")
        assert "hook-succeeded" not in policy, f"{name}: deleted before --logs reads it"
        assert "hook-failed" not in policy, f"{name}: a failure's logs would be gone"
    assert "before-hook-creation" in hooks[0]["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    # what the test pod mounts is there before it: an ordinary object of the release
    pod = hooks[0]
    maps = {v["configMap"]["name"] for v in pod["spec"]["volumes"] if "configMap" in v}
    ordinary = {o["metadata"]["name"] for o in render() if o["kind"] == "ConfigMap"}
    assert maps <= ordinary


# --- 1. Tilt: restart_process' restart file ----------------------------------------------------------
# tilt-extensions restart_process/Tiltfile (commit ea097cd): RESTART_FILE = '/tmp/.restart-proc' unless
# restart_file is given; the image build runs `touch` on it as the image's user, and the wrapper
# (tilt-restart-wrapper.go, entr) exits when the file it watches is missing.
RESTART_FILE_DEFAULT = "/tmp/.restart-proc"


def test_tilt_restart_file_lies_outside_every_volume_mount(render: Render) -> None:
    tilt = run_tiltfile()
    (chart,) = tilt.named("helm")
    objs = render(*(ROOT / v for v in chart["values"]))
    mounts = {
        m["mountPath"]
        for d in find(objs, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
        for m in c.get("volumeMounts", [])
    }
    assert mounts
    builds = tilt.named("docker_build_with_restart")
    assert builds
    for build in builds:
        restart = PurePosixPath(build.get("restart_file", RESTART_FILE_DEFAULT))
        hidden = [m for m in mounts if restart.is_relative_to(m)]
        assert not hidden, f"{build['ref']}: {restart} is hidden by the volume mounted at {hidden}"
        # the dev stage's user (10001) must be able to create it: its folder belongs to that user
        dockerfile = (ROOT / build["dockerfile"]).read_text()
        dev = dockerfile[dockerfile.index("AS dev") :].split("\nFROM ")[0]
        assert re.search(rf"chown 10001:10001 {re.escape(str(restart.parent))}\n", dev), build["dockerfile"]
        assert "USER 10001" in dev


# --- 5. the workflow on a machine with nothing installed ---------------------------------------------


def workflow_make_runs(job: dict[str, Any]) -> list[list[str]]:
    """The make invocations of a job's steps, in order; `bash .ci/run` stands for its own make lines."""
    runs: list[list[str]] = []
    for step in job["steps"]:
        for raw in step.get("run", "").splitlines():
            line = raw.strip()
            if line.startswith("bash .ci/run"):
                ci = (ROOT / ".ci" / "run").read_text().splitlines()
                runs += [ln.split()[1:] for ln in ci if ln.startswith("make ")]
            elif line.startswith("make "):
                runs.append([w for w in line.split()[1:] if not w.startswith(("-", "PYTEST_ARGS"))])
    return runs


TOOL_USE = {
    "helm": re.compile(r"(^|[;&|]\s*)helm\s"),
    "kind": re.compile(r"(^|[;&|]\s*|\s)kind (get|create|load|delete|export)\b"),
}


def replay(runs: list[list[str]]) -> list[str]:
    """Problems of running ``runs`` (make arguments) in order on a fresh machine: a command that uses the
    virtualenv or a Go tool before a step made it."""
    problems = []
    venv = False
    tools: set[str] = set()
    for args in runs:
        for line in make_dry_run(*args):
            if "-m venv .venv" in line:
                venv = True
            if match := re.search(r"scripts/provision.py tools ([\w ]+)", line):
                tools |= set(match[1].split())  # mk/tools.mk: PATH's, else go install into .cache/bin
            if ".venv/bin/" in line and not venv:
                problems.append(f"make {' '.join(args)}: uses .venv before it exists: {line[:100]}")
            for tool, use in TOOL_USE.items():
                if use.search(line) and tool not in tools:
                    problems.append(f"make {' '.join(args)}: runs {tool} before `make tools`: {line[:100]}")
    return problems


def test_the_replay_finds_a_missing_prerequisite() -> None:
    assert replay([["crds"]]) == []  # package registries only: neither the virtualenv nor `make tools`
    assert replay([["e2e"]]) == []  # e2e itself depends on init
    # `-o` keeps make from making a prerequisite: e2e without init; helm-test without tools
    stale = replay([["-o", ".venv/.init-stamp", "e2e"]])
    assert any("uses .venv before it exists" in p for p in stale), stale
    no_tools = replay([["-o", "tools", "helm-test"]])
    assert any("runs helm before" in p for p in no_tools), no_tools


@pytest.mark.parametrize("job", ["test", "e2e"])
def test_workflow_steps_run_in_order_on_a_fresh_machine(job: str) -> None:
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
    runs = workflow_make_runs(jobs[job])
    assert runs
    problems = replay(runs)
    assert not problems, "\n".join(problems)


# --- 8. smaller ---------------------------------------------------------------------------------------
# Upstream defaults the operator values merge with (Helm merges maps; only null removes a key):
#   strimzi-kafka-operator 1.2.0 helm-charts/helm3/strimzi-kafka-operator/values.yaml `resources`
#   kedacore/charts v2.20.2 keda/values.yaml `resources.{operator,metricServer,webhooks}`
UPSTREAM_DEFAULTS: dict[str, dict[str, Any]] = {
    "strimzi-operator.yaml": {
        "resources": {
            "limits": {"memory": "384Mi", "cpu": "1000m"},
            "requests": {"memory": "384Mi", "cpu": "200m"},
        }
    },
    "keda.yaml": {
        "resources": {
            part: {"limits": {"cpu": 1, "memory": "1000Mi"}, "requests": {"cpu": "100m", "memory": "100Mi"}}
            for part in ("operator", "metricServer", "webhooks")
        }
    },
}


@pytest.mark.parametrize("values_file", sorted(UPSTREAM_DEFAULTS))
def test_operator_values_leave_no_cpu_limit(helm: str, tmp_path: Path, values_file: str) -> None:
    """The values mean "memory limit only": with Helm's own merge of the upstream defaults (a throwaway
    chart whose values.yaml holds them), no CPU limit may remain."""
    chart = tmp_path / "defaults"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: defaults\nversion: 0.0.1\n")
    (chart / "values.yaml").write_text(yaml.safe_dump(UPSTREAM_DEFAULTS[values_file]))
    (chart / "templates" / "out.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: out}\n"
        "data:\n  values: {{ toJson .Values | quote }}\n"
    )
    out = subprocess.run(
        [helm, "template", "x", str(chart), "--values", str(VALUES / values_file)],
        capture_output=True,
        text=True,
        check=True,
    )
    merged = yaml.safe_load(yaml.safe_load(out.stdout)["data"]["values"])

    def limits(tree: Any) -> Iterator[dict[str, Any]]:
        if isinstance(tree, dict):
            if "limits" in tree:
                yield tree["limits"]
            for v in tree.values():
                yield from limits(v)

    found = list(limits(merged["resources"]))
    assert found
    for limit in found:
        assert "cpu" not in limit, f"{values_file}: a CPU limit remains after Helm's merge: {limit}"
        assert "memory" in limit


def test_podman_never_calls_docker_and_tells_kind() -> None:
    """kind v0.33.0: pkg/internal/runtime/runtime.go picks podman only from KIND_EXPERIMENTAL_PROVIDER;
    pkg/cmd/kind/load/docker-image/docker-image.go runs `docker save` whatever the provider."""
    lines = make_dry_run("cluster", "kind-load", "cluster-down", "DOCKER=podman")
    assert not [ln for ln in lines if re.search(r"(^|[;&|]\s*)docker ", ln)]
    kind_lines = [ln for ln in lines if re.search(r"(^|[;&|]\s*|\s)kind (get|create|load|delete|export)", ln)]
    assert kind_lines
    assert all("KIND_EXPERIMENTAL_PROVIDER=podman kind" in ln for ln in kind_lines), kind_lines
    assert any("podman save" in ln for ln in lines)
    assert any(
        "podman build" in ln and "docker.io/library/login-" in ln
        for ln in make_dry_run("images", "DOCKER=podman")
    )


# actions/*: action.yml `runs.using` by major (read at each major's first release tag): the first majors
# on node24 (GitHub deprecates node20 on its runners).
NODE24_SINCE = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "actions/setup-go": 7,
    "actions/setup-java": 5,
}


def test_workflow_actions_run_on_node24() -> None:
    uses = re.findall(r"uses:\s*(\S+)@v(\d+)", WORKFLOW.read_text())
    assert uses
    for action, major in uses:
        assert action in NODE24_SINCE, f"{action}: not in the table, read its action.yml and add it"
        assert int(major) >= NODE24_SINCE[action], f"{action}@v{major} runs on node20"


def test_make_port_forwards_leave_tilts_ports_free() -> None:
    """`make grafana` / `make k8s-monitor` while `make up` runs: Tilt forwards its own ports (Tiltfile)."""
    tilt = run_tiltfile()
    tilt_ports = {
        int(f.split(":")[0]) for r in tilt.named("k8s_resource") for f in r.get("port_forwards", [])
    }
    for resource in tilt.named("local_resource"):
        serve = resource.get("serve_cmd", "")
        if serve.startswith("make "):
            serve = " ".join(make_dry_run(*serve.split()[1:]))
        tilt_ports |= {int(p) for p in re.findall(r"port-forward \S+ (\d+):", serve)}
    assert {3000, 9090, 8000, 8001} <= tilt_ports
    make_ports = {
        int(p)
        for p in re.findall(r"port-forward \S+ (\d+):", " ".join(make_dry_run("grafana", "k8s-monitor")))
    }
    assert len(make_ports) == 2
    assert not make_ports & tilt_ports, f"make grafana/monitor take Tilt's ports {make_ports & tilt_ports}"


def test_kafdrop_matches_its_defaults() -> None:
    """Kafdrop 4.2.0: KafkaConfiguration.java (kafka.brokerConnect, bound from KAFKA_BROKERCONNECT),
    application.yml (server.port 9000; management base-path /actuator on port 9000), kafdrop.sh
    (JVM_OPTS)."""
    deployment = next(o for o in load_file(K8S / "ui" / "kafdrop.yaml") if o["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == "obsidiandynamics/kafdrop:4.2.0"
    env = {e["name"]: e["value"] for e in container["env"]}
    kafka, _ = kafka_objects()
    internal = {lst["port"] for lst in kafka["spec"]["kafka"]["listeners"] if lst["type"] == "internal"}
    host, _, port = env["KAFKA_BROKERCONNECT"].rpartition(":")
    assert host == f"{kafka['metadata']['name']}-kafka-bootstrap"
    assert int(port) in internal
    assert "JVM_OPTS" in env
    assert [p["containerPort"] for p in container["ports"]] == [9000]
    assert container["readinessProbe"]["httpGet"]["path"] == "/actuator/health"
    forwards = re.findall(r"port-forward svc/kafdrop \d+:(\d+)", " ".join(make_dry_run("k8s-monitor")))
    assert forwards == ["9000"]


def test_make_e2e_pins_the_kind_context() -> None:
    (line,) = [ln for ln in make_dry_run("e2e") if "pytest tests/e2e" in ln]
    assert (
        f"E2E_CONTEXT={make_var('KUBE_CONTEXT').replace('$(KIND_CLUSTER)', make_var('KIND_CLUSTER'))}" in line
    )


# --- Strimzi 1.2.0: the keys that size the Kafka (k8s/kafka, k8s/kafka/production; issue 23) ---------
# strimzi-kafka-operator 1.2.0:
#   api/.../model/common/template/PodDisruptionBudgetTemplate.java: `maxUnavailable`, default 1, under
#     spec.kafka.template.podDisruptionBudget (KafkaClusterTemplate.java)
#   cluster-operator/.../model/PodDisruptionBudgetUtils.java createCustomControllerPodDisruptionBudget:
#     minAvailable = max(0, nodes - maxUnavailable), nodes = every node of every pool
#     (KafkaCluster.generatePodDisruptionBudget: nodes().size())
#   api/.../model/common/TopologyLabelRack.java: spec.kafka.rack.topologyKey (type topology-label, default);
#     KafkaBrokerConfigurationBuilder.withRackId: broker.rack from the init container's rack.id, brokers only;
#     kafka-init/.../InitWriter.java writeRack: a node without the label -> the init container exits 1
#   api/.../model/topic/KafkaTopicSpec.java: replicas, when absent the broker's default.replication.factor
#   cluster-operator/.../model/KafkaCluster.java generatePerBrokerConfiguration: spec.kafka.config goes to
#     every node, controllers included (withUserConfiguration): with eligible leader replicas (Kafka 4) the
#     controllers write their min.insync.replicas as the cluster-wide default, so it must be there
#     (the local cluster does the same: scripts/kafka_cluster.py)
#   packaging/examples/kafka/kafka-persistent.yaml: the production example: a `controller` pool of 3 and a
#     `broker` pool of 3, replication factors 3, min.insync.replicas 2, transaction.state.log.min.isr 2
STRIMZI_PDB_DEFAULT_MAX_UNAVAILABLE = 1
STRIMZI_RACK_KEY = "topologyKey"
STRIMZI_PRODUCTION_EXAMPLE_CONFIG = {
    "offsets.topic.replication.factor": 3,
    "transaction.state.log.replication.factor": 3,
    "transaction.state.log.min.isr": 2,
    "default.replication.factor": 3,
    "min.insync.replicas": 2,
}


def strimzi_pdb_min_available(pools: list[Obj], kafka: Obj) -> int:
    """minAvailable of the PodDisruptionBudget Strimzi 1.2.0 creates for these node pools."""
    template = kafka["spec"]["kafka"].get("template", {}).get("podDisruptionBudget", {})
    nodes = sum(p["spec"]["replicas"] for p in pools)
    return max(0, nodes - template.get("maxUnavailable", STRIMZI_PDB_DEFAULT_MAX_UNAVAILABLE))


def test_strimzi_sizing_keys_give_one_node_at_a_time_and_the_upstream_production_settings() -> None:
    from tests.chart.test_kafka_sizing import production_objects

    kafka, pools = kafka_objects()
    assert strimzi_pdb_min_available(pools, kafka) == 0  # the single dev node may be drained
    production = list(production_objects())
    prod_kafka = next(o for o in production if o["kind"] == "Kafka")
    prod_pools = [o for o in production if o["kind"] == "KafkaNodePool"]
    nodes = sum(p["spec"]["replicas"] for p in prod_pools)
    # a voluntary disruption (drain, upgrade) takes one node: a partition keeps 2 of its 3 replicas in sync
    assert strimzi_pdb_min_available(prod_pools, prod_kafka) == nodes - 1
    assert STRIMZI_RACK_KEY in prod_kafka["spec"]["kafka"]["rack"]
    config = prod_kafka["spec"]["kafka"]["config"]
    assert {k: config[k] for k in STRIMZI_PRODUCTION_EXAMPLE_CONFIG} == STRIMZI_PRODUCTION_EXAMPLE_CONFIG
    assert sorted(p["metadata"]["name"] for p in prod_pools) == ["broker", "controller"]


# --- 9. kube-prometheus-stack 88.2.0: how its Alertmanager selects AlertmanagerConfigs ----------------
# kube-prometheus-stack 88.2.0 (appVersion v0.93.0):
#   templates/alertmanager/alertmanager.yaml renders the Alertmanager's spec.alertmanagerConfigSelector from
#     alertmanager.alertmanagerSpec.alertmanagerConfigSelector (when empty: `{}`, every
#     AlertmanagerConfig), spec.alertmanagerConfigNamespaceSelector from
#     ...alertmanagerConfigNamespaceSelector
#     and spec.alertmanagerConfigMatcherStrategy from ...alertmanagerConfigMatcherStrategy (only when set);
#   values.yaml: all three default to {}.
# prometheus-operator v0.93.0, Documentation/api-reference/api.md (AlertmanagerSpec):
#   alertmanagerConfigNamespaceSelector nil = the Alertmanager's own namespace only; {} = every namespace;
#   alertmanagerConfigMatcherStrategy.type OnNamespace (the default) adds namespace="<the config's
#   namespace>" to its routes and inhibit rules (pkg/alertmanager/amcfg.go; tests/chart/test_alerting.py).
KPS_ALERTMANAGER_KEYS = (
    "alertmanagerConfigSelector",
    "alertmanagerConfigNamespaceSelector",
    "alertmanagerConfigMatcherStrategy",
)


def test_kps_alertmanager_selects_the_charts_alertmanagerconfig(render: Render) -> None:
    kps = yaml.safe_load((VALUES / "kube-prometheus-stack.yaml").read_text())
    spec = kps["alertmanager"]["alertmanagerSpec"]
    assert set(KPS_ALERTMANAGER_KEYS) <= set(spec), (
        "set at alertmanager.alertmanagerSpec, where kps reads them"
    )
    [amc] = [o for o in render(VALUES / "login-stream.yaml") if o["kind"] == "AlertmanagerConfig"]
    assert spec["alertmanagerConfigSelector"], "an empty selector would select every AlertmanagerConfig"
    assert selects(spec["alertmanagerConfigSelector"], amc["metadata"]["labels"])
    # the app's namespace is not Alertmanager's (monitoring): nil would only look there
    assert amc["metadata"]["namespace"] == NAMESPACE != "monitoring"
    namespaces = {o["metadata"]["name"]: o for o in load_file(K8S / "namespaces.yaml")}
    assert spec["alertmanagerConfigNamespaceSelector"] is not None
    assert selects(
        spec["alertmanagerConfigNamespaceSelector"], namespaces[NAMESPACE]["metadata"].get("labels") or {}
    )
    assert spec["alertmanagerConfigMatcherStrategy"] == {"type": "OnNamespace"}
    # the same label the release's other monitoring objects carry for kps' Prometheus
    login = yaml.safe_load((VALUES / "login-stream.yaml").read_text())
    assert (
        login["alerting"]["alertmanagerConfig"]["additionalLabels"]
        == login["prometheusRule"]["additionalLabels"]
    )
