"""The deployed pipeline end to end: Kafka Ready, Deployments available, events through, Prometheus
scraping the ServiceMonitor targets, and no event lost while the consumer scales from 1 to 3.

Kafka clients run inside the cluster: the chart's check script (charts/login-stream/files/
pipeline_check.py, also the `helm test` hook) is executed in a producer pod, whose image has
confluent-kafka, so no Kafka address has to be reachable from where the tests run.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Settings, wait_for

SCRIPT = (Path(__file__).resolve().parents[2] / "charts/login-stream/files/pipeline_check.py").read_text()
pytestmark = pytest.mark.timeout(1200)


# --- Kubernetes helpers ------------------------------------------------------------------------------


def kafka_condition(api: Any, s: Settings) -> dict[str, Any] | None:
    from kubernetes import client

    kafka = client.CustomObjectsApi(api).get_namespaced_custom_object(
        "kafka.strimzi.io", "v1", s.namespace, "kafkas", s.kafka
    )
    for condition in kafka.get("status", {}).get("conditions", []):
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return dict(condition)
    return None


def deployment(api: Any, s: Settings, component: str) -> Any:
    from kubernetes import client

    return client.AppsV1Api(api).read_namespaced_deployment(f"{s.release}-{component}", s.namespace)


def available(api: Any, s: Settings, component: str, replicas: int | None = None) -> bool:
    d = deployment(api, s, component)
    want = d.spec.replicas if replicas is None else replicas
    status = d.status
    return bool(
        d.spec.replicas == want
        and (status.ready_replicas or 0) == want
        and (status.updated_replicas or 0) == want
        and (status.available_replicas or 0) == want
        and (status.replicas or 0) == want
    )


def scale(api: Any, s: Settings, component: str, replicas: int) -> None:
    from kubernetes import client

    client.AppsV1Api(api).patch_namespaced_deployment_scale(
        f"{s.release}-{component}", s.namespace, {"spec": {"replicas": replicas}}
    )


PAUSED_REPLICAS = "autoscaling.keda.sh/paused-replicas"


def scaled_object(api: Any, s: Settings) -> dict[str, Any] | None:
    """The release's ScaledObject (chart value keda.enabled), or None."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "keda.sh", "v1alpha1", s.namespace, "scaledobjects", f"{s.release}-consumer"
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def pause_keda(api: Any, s: Settings, replicas: int | None) -> None:
    """Hold the consumer at ``replicas`` through KEDA's pause annotation (None: autoscale again)."""
    from kubernetes import client

    client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "keda.sh", "v1alpha1", s.namespace, "scaledobjects", f"{s.release}-consumer",
        {"metadata": {"annotations": {PAUSED_REPLICAS: None if replicas is None else str(replicas)}}},
    )  # fmt: skip


def hold_consumer(api: Any, s: Settings, replicas: int | None, original: int | None = None) -> None:
    """Set the consumer's replicas by hand; where KEDA scales it, through KEDA (its HPA would undo a
    manual scale). ``replicas`` None: give it back (KEDA autoscales; else ``original`` replicas)."""
    if scaled_object(api, s) is not None:
        pause_keda(api, s, replicas)
    elif replicas is not None or original is not None:
        scale(api, s, "consumer", replicas if replicas is not None else int(original or 1))


def consumer_env(api: Any, s: Settings) -> dict[str, str]:
    container = deployment(api, s, "consumer").spec.template.spec.containers[0]
    return {e.name: e.value for e in container.env or [] if e.value is not None}


def running_pod(api: Any, s: Settings, component: str) -> str:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_namespaced_pod(
        s.namespace,
        label_selector=f"app.kubernetes.io/instance={s.release},app.kubernetes.io/component={component}",
    )
    for pod in pods.items:
        ready = any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        if pod.status.phase == "Running" and ready and pod.metadata.deletion_timestamp is None:
            return str(pod.metadata.name)
    pytest.fail(f"no ready {component} pod in {s.namespace}")


def check_credentials(api: Any, s: Settings, env: dict[str, str]) -> list[str]:
    """``env`` arguments that run the check as the chart's check KafkaUser (security on), else nothing.

    The producer pod mounts the cluster CA but only its own user's password, and the producer user may
    not read the output: the check user's password comes from its Strimzi Secret (key ``password``).
    """
    import base64

    from kubernetes import client

    if env.get("SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT":
        return []
    if env["SECURITY_PROTOCOL"] != "SASL_SSL":
        pytest.skip("make e2e runs the check with SCRAM-SHA-512 credentials; this release uses mutual TLS")
    user = f"{s.release}-check"
    secret = client.CoreV1Api(api).read_namespaced_secret(user, s.namespace)
    password = base64.b64decode(secret.data["password"]).decode()
    return ["env", f"SASL_USERNAME={user}", "SASL_PASSWORD_FILE=", f"SASL_PASSWORD={password}"]


def check(api: Any, s: Settings, *args: str, timeout: float = 600) -> dict[str, Any]:
    """Run pipeline_check.py ARGS in a producer pod; its last stdout line, parsed (JSON)."""
    from kubernetes import client
    from kubernetes.stream import stream

    env = consumer_env(api, s)
    topics = [
        f"--input-topic={env['INPUT_TOPIC']}",
        f"--output-topic={env['OUTPUT_TOPIC']}",
        f"--dlq-topic={env['DLQ_TOPIC']}",
        f"--bootstrap={env['BOOTSTRAP_SERVERS']}",
    ]
    pod = running_pod(api, s, "producer")
    resp = stream(
        client.CoreV1Api(api).connect_get_namespaced_pod_exec,
        pod,
        s.namespace,
        command=[*check_credentials(api, s, env), "python", "-c", SCRIPT, *topics, *args],
        stderr=True,
        stdout=True,
        stdin=False,
        tty=False,
        _preload_content=False,
    )
    out, err = [], []
    deadline = time.monotonic() + timeout
    while resp.is_open() and time.monotonic() < deadline:
        resp.update(timeout=5)
        out.append(resp.read_stdout() if resp.peek_stdout() else "")
        err.append(resp.read_stderr() if resp.peek_stderr() else "")
    timed_out = resp.is_open()
    returncode: int | None = None
    if not timed_out:
        try:
            returncode = resp.returncode  # from the exec error channel, before closing
        except (TypeError, KeyError, ValueError, IndexError):
            returncode = None
    out.append(resp.read_stdout() if resp.peek_stdout() else "")
    err.append(resp.read_stderr() if resp.peek_stderr() else "")
    resp.close()
    stdout, stderr = "".join(out).strip(), "".join(err).strip()
    assert not timed_out, f"pipeline_check {args[0]} still running after {timeout}s"
    lines = stdout.splitlines()
    assert lines, f"pipeline_check {args[0]} printed nothing; stderr: {stderr[-2000:]}"
    result: dict[str, Any] = json.loads(lines[-1])
    result["_returncode"] = returncode
    result["_stderr"] = stderr[-2000:]
    return result


def prometheus(api: Any, s: Settings, path: str) -> Any:
    """GET a Prometheus API path through the API server's service proxy."""
    from kubernetes import client

    raw = client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
        s.prometheus, s.monitoring, path, _preload_content=False
    )
    body = json.loads(raw.data)
    assert body.get("status") == "success", body
    return body["data"]


# --- tests, in the order a person would check -------------------------------------------------------


def test_kafka_is_ready(api: Any, settings: Settings) -> None:
    condition = wait_for(f"Kafka {settings.kafka} Ready", lambda: kafka_condition(api, settings), 900, 10)
    assert condition["status"] == "True"
    from kubernetes import client

    topics = client.CustomObjectsApi(api).list_namespaced_custom_object(
        "kafka.strimzi.io", "v1", settings.namespace, "kafkatopics"
    )["items"]
    # the topics of this Kafka (a namespace may hold another cluster's: k8s/kafka/plaintext), by the
    # topic's name in Kafka (spec.topicName, else the resource's name: Strimzi's KafkaTopic spec)
    by_name = {
        t["spec"].get("topicName") or t["metadata"]["name"]: t
        for t in topics
        if t["metadata"].get("labels", {}).get("strimzi.io/cluster") == settings.kafka
    }
    env = consumer_env(api, settings)
    for name in (env["INPUT_TOPIC"], env["OUTPUT_TOPIC"], env["DLQ_TOPIC"]):
        assert name in by_name, f"KafkaTopic {name} missing"
    assert by_name[env["INPUT_TOPIC"]]["spec"]["partitions"] >= 6


@pytest.mark.parametrize("component", ["producer", "consumer"])
def test_deployment_is_available(api: Any, settings: Settings, component: str) -> None:
    wait_for(f"deployment {component} available", lambda: available(api, settings, component), 300, 5)


def test_events_flow_through_the_pipeline(api: Any, settings: Settings) -> None:
    result = check(api, settings, "check", "--count=200", "--timeout=240", "--dlq")
    assert result["result"] == "ok", result
    assert result["processed"] == 200
    assert result["dlq"] == "untouched"
    assert result["_returncode"] == 0


def test_service_monitor_targets_are_up(api: Any, settings: Settings) -> None:
    def up() -> dict[str, list[str]] | None:
        targets = prometheus(api, settings, "api/v1/targets")["activeTargets"]
        jobs: dict[str, list[str]] = {}
        for target in targets:
            if target["labels"].get("namespace") == settings.namespace:
                jobs.setdefault(target["labels"].get("job", ""), []).append(target["health"])
        wanted = ("login-consumer", "login-producer")
        if all(jobs.get(j) and set(jobs[j]) == {"up"} for j in wanted):
            return jobs
        return None

    jobs = wait_for("Prometheus targets login-consumer and login-producer up", up, 240, 10)
    assert len(jobs["login-consumer"]) == deployment(api, settings, "consumer").spec.replicas


def test_app_and_kafka_metrics_are_in_prometheus(api: Any, settings: Settings) -> None:
    wanted = {
        "login_consumer_events_consumed_total",
        "login_consumer_events_processed_total",
        "login_producer_events_sent_total",
        "login_consumer_lag_messages",  # the consumer's own lag (no Kafka Exporter)
        # Strimzi Metrics Reporter: what the Kafka and KRaft dashboards (dashboards/strimzi/) start from
        "kafka_server_replicamanager_partitioncount",
        "kafka_server_kafkaserver_brokerstate",
        "kafka_server_raft_metrics_current_state_info",
        "kafka_server_brokertopicmetrics_messagesinpersec_total",
    }

    def present() -> set[str] | None:
        names = set(prometheus(api, settings, "api/v1/label/__name__/values"))
        return names if wanted <= names else None

    wait_for(f"metrics {sorted(wanted)} in Prometheus", present, 300, 15)


def test_strimzi_pod_monitors_have_targets_up(api: Any, settings: Settings) -> None:
    """Each PodMonitor of k8s/monitoring/ finds its pods and port (job <namespace>/<PodMonitor>)."""
    wanted = ("kafka-resources-metrics", "entity-operator-metrics", "cluster-operator-metrics")

    def up() -> dict[str, list[str]] | None:
        targets = prometheus(api, settings, "api/v1/targets")["activeTargets"]
        health: dict[str, list[str]] = {}
        for target in targets:
            job = target["labels"].get("job", "").rpartition("/")[2]
            health.setdefault(job, []).append(target["health"])
        return health if all("up" in health.get(name, []) for name in wanted) else None

    wait_for(f"PodMonitor targets {wanted} up", up, 300, 15)


def test_alert_rules_are_loaded(api: Any, settings: Settings) -> None:
    import yaml

    source = Path(__file__).resolve().parents[2] / "monitoring/rules/login-stream.rules.yaml"
    groups = {g["name"] for g in yaml.safe_load(source.read_text())["groups"]}

    def loaded() -> set[str] | None:
        names = {g["name"] for g in prometheus(api, settings, "api/v1/rules")["groups"]}
        return names if groups <= names else None

    wait_for(f"rule groups {sorted(groups)} loaded", loaded, 180, 10)


def test_scaling_the_consumer_from_one_to_three_loses_no_event(api: Any, settings: Settings) -> None:
    original = deployment(api, settings, "consumer").spec.replicas
    n = settings.events
    marker = f"e2e-{uuid.uuid4().hex[:10]}"
    try:
        hold_consumer(api, settings, 1)
        wait_for("consumer at 1 replica", lambda: available(api, settings, "consumer", 1), 300, 5)
        offsets = check(api, settings, "mark")
        offsets.pop("_returncode"), offsets.pop("_stderr")
        half = n // 2
        sent = check(api, settings, "produce", f"--marker={marker}", f"--count={half}", "--rate=200")
        assert sent["sent"] == half, sent
        # scale up while the consumer works through the backlog, and keep producing during the rebalance
        hold_consumer(api, settings, 3)
        sent = check(
            api,
            settings,
            "produce",
            f"--marker={marker}",
            f"--start={half}",
            f"--count={n - half}",
            "--rate=200",
        )
        assert sent["sent"] == n - half, sent
        wait_for("consumer at 3 replicas", lambda: available(api, settings, "consumer", 3), 300, 5)
        result = check(
            api,
            settings,
            "verify",
            f"--marker={marker}",
            f"--count={n}",
            f"--offsets={json.dumps(offsets)}",
            "--timeout=300",
        )
        assert result["missing"] == 0, result
        assert result["processed"] == n, result
        assert result["result"] == "ok", result
    finally:
        hold_consumer(api, settings, None, original)
