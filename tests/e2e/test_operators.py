"""What running operators make checkable: a broker pod deleted mid-stream loses nothing (Strimzi brings
it back), and KEDA scales the consumer on the group's lag, up when it builds and back down once drained.

Both use the check script in a producer pod (as test_pipeline.py does). The KEDA test needs the release's
ScaledObject (chart value keda.enabled, on in k8s/values/local-node/login-stream.yaml; on kind after
`make keda` and `--set keda.enabled=true`) and skips, naming that, without it. It pauses the ScaledObject
at 0 replicas (annotation ``autoscaling.keda.sh/paused-replicas``, KEDA 2.20.2
``apis/keda/v1alpha1/scaledobject_types.go``, pinned in tests/chart/test_upstream_node_operators.py),
builds a lag far above the trigger's lagThreshold, then unpauses it: KEDA must raise the Deployment
above one replica, every event must arrive, and once the lag is gone it must come back to
minReplicaCount.
E2E_KEDA_EVENTS (default 100000: the consumer drains 20000 on this machine before the HPA KEDA
makes has read a metric) sets the backlog.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Settings, wait_for
from tests.e2e.test_pipeline import check, deployment, kafka_condition, pause_keda, scaled_object

pytestmark = pytest.mark.timeout(1800)
KEDA_EVENTS = int(os.environ.get("E2E_KEDA_EVENTS", "100000"))


def broker_pods(api: Any, s: Settings) -> list[Any]:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_namespaced_pod(
        s.namespace, label_selector=f"strimzi.io/cluster={s.kafka},strimzi.io/broker-role=true"
    )
    return list(pods.items)


def marked_offsets(api: Any, s: Settings) -> dict[str, Any]:
    offsets = check(api, s, "mark")
    offsets.pop("_returncode"), offsets.pop("_stderr")
    return offsets


def test_a_broker_pod_deleted_mid_stream_loses_nothing(api: Any, settings: Settings) -> None:
    from kubernetes import client

    wait_for(f"Kafka {settings.kafka} Ready", lambda: kafka_condition(api, settings), 900, 10)
    pods = broker_pods(api, settings)
    assert pods, f"no broker pod of Kafka {settings.kafka} (strimzi.io/cluster, strimzi.io/broker-role)"
    victim = pods[0].metadata
    offsets = marked_offsets(api, settings)
    marker, n = f"e2e-broker-{uuid.uuid4().hex[:8]}", 3000
    sent: dict[str, Any] = {}

    def produce() -> None:
        # its own ApiClient: stream() swaps the request method of the client it is given
        args = ("produce", f"--marker={marker}", f"--count={n}", "--rate=50", "--flush-timeout=600")
        sent.update(check(client.ApiClient(), settings, *args, timeout=1200))

    producer = threading.Thread(target=produce, daemon=True)
    producer.start()
    time.sleep(15)  # events are flowing
    client.CoreV1Api(api).delete_namespaced_pod(victim.name, settings.namespace)

    def replaced() -> bool:
        pod = next((p for p in broker_pods(api, settings) if p.metadata.name == victim.name), None)
        if pod is None or pod.metadata.uid == victim.uid:
            return False
        return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])

    wait_for(f"broker pod {victim.name} recreated and Ready", replaced, 900, 5)
    wait_for(f"Kafka {settings.kafka} Ready again", lambda: kafka_condition(api, settings), 900, 10)
    producer.join(timeout=1300)
    assert not producer.is_alive(), "the producer did not finish"
    assert sent.get("sent") == n, sent
    result = check(
        api, settings, "verify", f"--marker={marker}", f"--count={n}",
        f"--offsets={json.dumps(offsets)}", "--timeout=600", timeout=900,
    )  # fmt: skip
    assert result["missing"] == 0, result
    assert result["processed"] == n, result
    assert result["result"] == "ok", result


def _replicas(api: Any, s: Settings) -> int:
    return int(deployment(api, s, "consumer").spec.replicas or 0)


def test_keda_scales_the_consumer_on_lag_and_back(api: Any, settings: Settings) -> None:
    so = scaled_object(api, settings)
    if so is None:
        pytest.skip(f"no ScaledObject {settings.release}-consumer: the release runs without keda.enabled")

    def ready() -> dict[str, Any] | None:
        current = scaled_object(api, settings) or {}
        conditions = {c["type"]: c["status"] for c in current.get("status", {}).get("conditions", [])}
        return current if conditions.get("Ready") == "True" else None

    so = wait_for("ScaledObject Ready (KEDA reaches Kafka with the consumer's credentials)", ready, 300, 5)
    low = int(so["spec"].get("minReplicaCount", 1))
    threshold = max(int(t["metadata"]["lagThreshold"]) for t in so["spec"]["triggers"])
    assert 4 * threshold <= KEDA_EVENTS, f"E2E_KEDA_EVENTS={KEDA_EVENTS} must be well above {threshold}"
    try:
        pause_keda(api, settings, 0)
        wait_for("consumer paused at 0 replicas", lambda: _replicas(api, settings) == 0, 300, 5)
        offsets = marked_offsets(api, settings)
        marker = f"e2e-keda-{uuid.uuid4().hex[:8]}"
        sent = check(api, settings, "produce", f"--marker={marker}", f"--count={KEDA_EVENTS}", timeout=900)
        assert sent["sent"] == KEDA_EVENTS, sent
        pause_keda(api, settings, None)
        peak = wait_for(
            f"KEDA scaling the consumer above 1 replica for a lag of {KEDA_EVENTS}",
            lambda: (r := _replicas(api, settings)) > 1 and r,
            300,
            3,
        )
        print(f"keda: consumer scaled to {peak} replicas for a lag of {KEDA_EVENTS} (threshold {threshold})")
        result = check(
            api, settings, "verify", f"--marker={marker}", f"--count={KEDA_EVENTS}",
            f"--offsets={json.dumps(offsets)}", "--timeout=600", timeout=900,
        )  # fmt: skip
        assert result["missing"] == 0, result
        assert result["result"] == "ok", result
        started = time.monotonic()
        back = f"KEDA back at {low} replica(s) once the lag drained"
        wait_for(back, lambda: _replicas(api, settings) == low, 900, 10)
        print(f"keda: back to {low} replica(s) {time.monotonic() - started:.0f}s after the backlog drained")
    finally:
        pause_keda(api, settings, None)
