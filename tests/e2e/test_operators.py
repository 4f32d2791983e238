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
The consumer's pods are held Pending (a scheduling gate) until KEDA has scaled, so that the one replica
KEDA starts on unpausing cannot drain the backlog before the HPA has read it (the cause of a flake:
test_keda_scales_the_consumer_on_lag_and_back says more). E2E_KEDA_EVENTS (default 20000: enough for
every partition of either stage to exceed its share of lagThreshold twice over) sets the backlog.
The broker test sends E2E_BROKER_EVENTS (3000) at E2E_BROKER_RATE (50/s) around the deletion; under
exactly-once it also requires no duplicate, and it prints the longest time without output (the stall,
from the outputs' record timestamps).
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
from tests.e2e.test_pipeline import (
    check,
    consumer_env,
    deployment,
    kafka_condition,
    pause_keda,
    scaled_object,
)

pytestmark = pytest.mark.timeout(1800)
KEDA_EVENTS = int(os.environ.get("E2E_KEDA_EVENTS", "20000"))
BROKER_EVENTS = int(os.environ.get("E2E_BROKER_EVENTS", "3000"))
BROKER_RATE = int(os.environ.get("E2E_BROKER_RATE", "50"))


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
    marker, n = f"e2e-broker-{uuid.uuid4().hex[:8]}", BROKER_EVENTS
    guarantee = consumer_env(api, settings).get("PROCESSING_GUARANTEE", "at-least-once")
    sent: dict[str, Any] = {}

    def produce() -> None:
        # its own ApiClient: stream() swaps the request method of the client it is given
        rate = f"--rate={BROKER_RATE}"
        args = ("produce", f"--marker={marker}", f"--count={n}", rate, "--flush-timeout=600")
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

    deleted = time.monotonic()
    wait_for(f"broker pod {victim.name} recreated and Ready", replaced, 900, 5)
    back = time.monotonic() - deleted
    wait_for(f"Kafka {settings.kafka} Ready again", lambda: kafka_condition(api, settings), 900, 10)
    producer.join(timeout=1300)
    assert not producer.is_alive(), "the producer did not finish"
    assert sent.get("sent") == n, sent
    result = check(
        api, settings, "verify", f"--marker={marker}", f"--count={n}",
        f"--offsets={json.dumps(offsets)}", "--timeout=600", timeout=900,
    )  # fmt: skip
    print(
        f"broker: deleted {victim.name} of {len(pods)} brokers ({guarantee}), Ready again after {back:.0f}s; "
        f"{n} events at {BROKER_RATE}/s: processed {result['processed']}, missing {result['missing']}, "
        f"duplicates {result['duplicates']}, longest time without output {result.get('max_gap_s')}s"
    )
    assert result["missing"] == 0, result
    assert result["processed"] == n, result
    assert result["result"] == "ok", result
    if guarantee == "exactly-once":
        assert result["duplicates"] == 0, result


def _replicas(api: Any, s: Settings) -> int:
    return int(deployment(api, s, "consumer").spec.replicas or 0)


HOLD_GATE = "login-stream.e2e/hold"


def _hold_pods(api: Any, s: Settings, hold: bool) -> None:
    """Gate (or release) the scheduling of the consumer's pods: a scheduling gate in its pod template
    (Kubernetes' pod scheduling readiness, ``spec.schedulingGates``). Gated pods count as the
    Deployment's replicas and stay Pending: nothing consumes, so the lag KEDA reads stays put."""
    from kubernetes import client

    gates = [{"name": HOLD_GATE}] if hold else None
    client.AppsV1Api(api).patch_namespaced_deployment(
        f"{s.release}-consumer", s.namespace,
        {"spec": {"template": {"spec": {"schedulingGates": gates}}}},
        _content_type="application/merge-patch+json",
    )  # fmt: skip


def _hpa(api: Any, s: Settings) -> dict[str, Any]:
    """What KEDA's HPA says now: desired replicas, the metrics it read, its conditions."""
    from kubernetes import client

    hpas = client.AutoscalingV2Api(api).list_namespaced_horizontal_pod_autoscaler(s.namespace).items
    for hpa in hpas:
        if hpa.spec.scale_target_ref.name == f"{s.release}-consumer":
            st = hpa.status
            return {
                "desired": st.desired_replicas,
                "metrics": [m.external.current.average_value for m in st.current_metrics or [] if m.external],
                "conditions": {c.type: f"{c.status}:{c.reason}" for c in st.conditions or []},
            }
    return {"hpa": "none"}


def test_keda_scales_the_consumer_on_lag_and_back(api: Any, settings: Settings) -> None:
    """Up on lag, back down once drained, with no race: the backlog is held until KEDA scaled.

    KEDA deletes its HPA while a ScaledObject is paused and creates a new one on unpausing; that HPA
    reads its first metric on the HPA controller's next sync (15 s; it starts "ScalingDisabled" with the
    Deployment at 0 replicas, and each failed read costs another sync), while the one replica KEDA starts
    at once drains the backlog (100000 events in about 45 s here). Measured on the node: first reading
    3 s and 17 s after unpausing in two runs; a run where it came after the drain never scaled (the
    flake). So the consumer's pods are gated from scheduling (``_hold_pods``) until the HPA has scaled
    the Deployment above one replica on the held lag, and only then released to drain it.
    """
    so = scaled_object(api, settings)
    if so is None:
        pytest.skip(f"no ScaledObject {settings.release}-consumer: the release runs without keda.enabled")

    def ready() -> dict[str, Any] | None:
        current = scaled_object(api, settings) or {}
        conditions = {c["type"]: c["status"] for c in current.get("status", {}).get("conditions", [])}
        return current if conditions.get("Ready") == "True" else None

    so = wait_for("ScaledObject Ready (KEDA reaches Kafka with the consumer's credentials)", ready, 300, 5)
    low = int(so["spec"].get("minReplicaCount", 1))
    high = int(so["spec"]["maxReplicaCount"])
    threshold = max(int(t["metadata"]["lagThreshold"]) for t in so["spec"]["triggers"])
    least = 2 * high * threshold
    assert least <= KEDA_EVENTS, f"E2E_KEDA_EVENTS={KEDA_EVENTS}: at least {least}"
    try:
        pause_keda(api, settings, 0)
        wait_for("consumer paused at 0 replicas", lambda: _replicas(api, settings) == 0, 300, 5)
        _hold_pods(api, settings, True)
        offsets = marked_offsets(api, settings)
        marker = f"e2e-keda-{uuid.uuid4().hex[:8]}"
        sent = check(api, settings, "produce", f"--marker={marker}", f"--count={KEDA_EVENTS}", timeout=900)
        assert sent["sent"] == KEDA_EVENTS, sent
        unpaused = time.monotonic()
        pause_keda(api, settings, None)
        seen: dict[str, Any] = {}

        def scaled() -> int | None:
            seen.clear()
            seen.update(_hpa(api, settings), replicas=_replicas(api, settings))
            return int(seen["replicas"]) if seen["replicas"] > 1 else None

        deadline = time.monotonic() + 300
        while (peak := scaled()) is None:
            assert time.monotonic() < deadline, f"KEDA did not scale above 1 replica in 300 s: {seen}"
            time.sleep(3)
        took = time.monotonic() - unpaused
        print(f"keda: consumer scaled to {peak} replicas {took:.0f}s after unpausing, on a held lag of "
              f"{KEDA_EVENTS} (threshold {threshold}); HPA {seen}")  # fmt: skip
        _hold_pods(api, settings, False)
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
        _hold_pods(api, settings, False)
        pause_keda(api, settings, None)
