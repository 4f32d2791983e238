"""Refused, not crashed, on Kubernetes (issue 19): a KafkaUser whose ACL is missing.

The consumer's KafkaUser loses its Read on the input topic (its other ACLs stay), through Strimzi's User
Operator as an operator's mistake would. Then, for the running consumer and for a pod started into the
refusal (deleted, recreated by its Deployment):

* the pod stays up: Running, ``restartCount`` 0 (no crash loop: the access policy of
  ``login_consumer.operations.access`` holds the work and retries; liveness keeps answering), and NotReady
  (``/ready`` 503 with the reason);
* its log says why in one JSON line, ``kafka.authorization_failed`` with the code
  (``TOPIC_AUTHORIZATION_FAILED``), the user, what was refused and what to do, and holds no traceback;
* Prometheus (the node's, through the API server) fires ``LoginStreamAuthorizationFailures`` for the
  consumer (``/api/v1/alerts``, state firing; the rule waits ``for: 1m``);
* the producer goes on writing: events sent during the refusal wait on the input topic.

Then the ACL is restored: the same pod becomes Ready without a restart and every event sent during the
refusal reaches the output (nothing lost; duplicates reported, none expected under exactly-once).

Needs a release with Kafka security on and Strimzi's User Operator (skips naming it otherwise). KEDA, if
on, is paused at one replica meanwhile (its HPA would otherwise add pods, each refused the same way).
E2E_ACCESS_EVENTS (default 2000) sets the events sent during the refusal.
"""

from __future__ import annotations

import copy
import json
import os
import time
import uuid
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import Settings, wait_for
from tests.e2e.test_pipeline import available, check, consumer_env, hold_consumer, prometheus

pytestmark = pytest.mark.timeout(1800)
ACCESS_EVENTS = int(os.environ.get("E2E_ACCESS_EVENTS", "2000"))
ALERT = "LoginStreamAuthorizationFailures"
REFUSED_LINE = "kafka.authorization_failed"


def _user(api: Any, s: Settings, name: str) -> dict[str, Any] | None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        found: dict[str, Any] = client.CustomObjectsApi(api).get_namespaced_custom_object(
            "kafka.strimzi.io", "v1", s.namespace, "kafkausers", name
        )
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return found


def _set_acls(api: Any, s: Settings, name: str, acls: list[dict[str, Any]]) -> int:
    """Replace the KafkaUser's ACLs (a merge patch replaces the list whole); its new generation."""
    from kubernetes import client

    patched = client.CustomObjectsApi(api).patch_namespaced_custom_object(
        "kafka.strimzi.io", "v1", s.namespace, "kafkausers", name,
        {"spec": {"authorization": {"acls": acls}}},
    )  # fmt: skip
    return int(patched["metadata"]["generation"])


def _reconciled(api: Any, s: Settings, name: str, generation: int) -> bool:
    """The User Operator applied this generation of the KafkaUser (its ACLs are in Kafka)."""
    user = _user(api, s, name) or {}
    status = user.get("status", {})
    ready = any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))
    return ready and int(status.get("observedGeneration", -1)) >= generation


def _without_read_on(acls: list[dict[str, Any]], topic: str) -> list[dict[str, Any]]:
    out = copy.deepcopy(acls)
    hits = 0
    for acl in out:
        res = acl["resource"]
        if res.get("type") == "topic" and res.get("name") == topic and res.get("patternType") == "literal":
            assert "Read" in acl["operations"], acl
            acl["operations"] = [op for op in acl["operations"] if op != "Read"]
            hits += 1
    assert hits == 1, f"no single literal ACL on topic {topic}: {acls}"
    return out


def _consumer_pods(api: Any, s: Settings) -> list[Any]:
    from kubernetes import client

    pods = client.CoreV1Api(api).list_namespaced_pod(
        s.namespace,
        label_selector=f"app.kubernetes.io/instance={s.release},app.kubernetes.io/component=consumer",
    )
    return [p for p in pods.items if p.metadata.deletion_timestamp is None]


def _state(pod: Any) -> dict[str, Any]:
    statuses = pod.status.container_statuses or []
    return {
        "name": pod.metadata.name,
        "phase": pod.status.phase,
        "ready": any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []),
        "restarts": sum(c.restart_count for c in statuses),
        "running": bool(statuses) and all(c.state.running is not None for c in statuses),
    }


def _one_pod(api: Any, s: Settings) -> dict[str, Any] | None:
    pods = _consumer_pods(api, s)
    return _state(pods[0]) if len(pods) == 1 else None


def _log(api: Any, s: Settings, pod: str) -> str:
    from kubernetes import client

    return str(client.CoreV1Api(api).read_namespaced_pod_log(pod, s.namespace, container="consumer"))


def _refused_lines(log: str) -> list[dict[str, Any]]:
    found = []
    for line in log.splitlines():
        if REFUSED_LINE not in line:
            continue
        try:
            doc = json.loads(line)
        except ValueError:
            pytest.fail(f"the consumer's refusal line is not one JSON line: {line[:500]}")
        # librdkafka names the topic in some of these errors only: the code and the user are always there
        if doc.get("code") == "TOPIC_AUTHORIZATION_FAILED" and doc.get("user"):
            found.append(doc)
    return found


def _alerts(api: Any, s: Settings, *states: str) -> list[dict[str, Any]]:
    alerts = prometheus(api, s, "api/v1/alerts")["alerts"]
    return [
        a
        for a in alerts
        if a["labels"].get("alertname") == ALERT
        and a["labels"].get("namespace") == s.namespace
        and a["labels"].get("job") == "login-consumer"
        and a["labels"].get("type") == "authorization"
        and a.get("state") in states
    ]


def _instant(rfc3339: str) -> float:
    """Prometheus' activeAt (RFC 3339, up to nanoseconds) as a Unix time."""
    whole, _, rest = rfc3339.rstrip("Z").partition(".")
    return datetime.fromisoformat(whole + "+00:00").timestamp() + float(f"0.{rest[:6] or 0}")


def _firing(api: Any, s: Settings) -> list[dict[str, Any]]:
    return _alerts(api, s, "firing")


def test_a_missing_acl_leaves_the_consumer_up_not_ready_alerting_then_recovers(
    api: Any, settings: Settings
) -> None:
    from kubernetes import client

    name = f"{settings.release}-consumer"
    user = _user(api, settings, name)
    if user is None or not user["spec"].get("authorization"):
        pytest.skip(f"no KafkaUser {name} with ACLs: the release runs without kafka.security (Strimzi users)")
    topic = consumer_env(api, settings)["INPUT_TOPIC"]
    original = copy.deepcopy(user["spec"]["authorization"]["acls"])
    deployed = client.AppsV1Api(api).read_namespaced_deployment(name, settings.namespace)
    replicas = int(deployed.spec.replicas or 1)
    timings: dict[str, float] = {}
    try:
        hold_consumer(api, settings, 1)
        wait_for("consumer at 1 replica", lambda: available(api, settings, "consumer", 1), 300, 5)
        wait_for("one consumer pod", lambda: _one_pod(api, settings), 300, 5)
        offsets = check(api, settings, "mark")
        offsets.pop("_returncode"), offsets.pop("_stderr")

        # the alert must be this refusal's: none pending or firing before (an earlier refusal's lasts the
        # rule's 5 minutes of increase)
        wait_for(f"no {ALERT} for the consumer before the test",
                 lambda: not _alerts(api, settings, "pending", "firing"), 600, 10)  # fmt: skip
        # 1. revoked while running
        t0 = time.monotonic()
        revoked_at = time.time()
        generation = _set_acls(api, settings, name, _without_read_on(original, topic))
        wait_for(f"KafkaUser {name} reconciled without Read on {topic}",
                 lambda: _reconciled(api, settings, name, generation), 300, 3)  # fmt: skip
        marker = f"e2e-acl-{uuid.uuid4().hex[:8]}"
        half = ACCESS_EVENTS // 2
        sent = check(api, settings, "produce", f"--marker={marker}", f"--count={half}")
        assert sent["sent"] == half, sent
        running = wait_for(
            "the running consumer NotReady (its read refused)",
            lambda: (p := _one_pod(api, settings)) and not p["ready"] and p,
            300, 3,
        )  # fmt: skip
        timings["running pod NotReady"] = time.monotonic() - t0
        assert running["restarts"] == 0, running
        assert running["running"], running

        # 2. a pod started into the refusal (what a rollout or a crash loop would do)
        client.CoreV1Api(api).delete_namespaced_pod(running["name"], settings.namespace)
        fresh = wait_for(
            "a new consumer pod running",
            lambda: (p := _one_pod(api, settings)) and p["name"] != running["name"] and p["running"] and p,
            300, 3,
        )  # fmt: skip
        sent = check(api, settings, "produce", f"--marker={marker}", f"--start={half}",
                     f"--count={ACCESS_EVENTS - half}")  # fmt: skip
        assert sent["sent"] == ACCESS_EVENTS - half, sent
        refused = wait_for(
            f"{REFUSED_LINE} (TOPIC_AUTHORIZATION_FAILED) in the new pod's log",
            lambda: _refused_lines(_log(api, settings, fresh["name"])),
            300, 5,
        )  # fmt: skip
        print(f"access: the consumer's log says: {json.dumps(refused[0])[:600]}")
        samples: list[dict[str, Any]] = []

        def firing_while_held() -> list[dict[str, Any]]:
            # looked at until the alert fires: the same pod, up, never restarted, never Ready (a /ready
            # that answered 200 between two refusals once made it flap Ready: intake/refusals.py)
            samples.append(_one_pod(api, settings) or {"pods": len(_consumer_pods(api, settings))})
            return _firing(api, settings)

        alert = wait_for(f"{ALERT} firing in Prometheus", firing_while_held, 600, 5)
        since = _instant(alert[0]["activeAt"])
        assert since >= revoked_at - 5, f"the alert was active before the revoke: {alert[0]}"
        wrong = [p for p in samples if p.get("name") != fresh["name"] or p["restarts"] or not p["running"]]
        assert not wrong, f"the consumer pod was replaced, restarted or not running: {wrong[:5]}"
        ready = [p for p in samples if p["ready"]]
        assert not ready, f"Ready in {len(ready)} of {len(samples)} looks while its read is refused"
        timings["alert firing"] = time.monotonic() - t0
        # it stayed up and not ready the whole time: the liveness probe never failed it
        now = _one_pod(api, settings)
        assert now is not None, "no single consumer pod"
        assert now["name"] == fresh["name"], now
        assert now["restarts"] == 0, now
        assert now["running"], now
        assert not now["ready"], now
        log = _log(api, settings, fresh["name"])
        assert "Traceback" not in log, log[-3000:]
        print(f"access: {ALERT} firing: {alert[0]['labels']}; pod {now}, NotReady in {len(samples)} looks")

        # 3. the ACL back: the same pod recovers, nothing lost
        t1 = time.monotonic()
        generation = _set_acls(api, settings, name, original)
        wait_for(f"KafkaUser {name} reconciled with its ACLs back",
                 lambda: _reconciled(api, settings, name, generation), 300, 3)  # fmt: skip
        back = wait_for(
            "the same consumer pod Ready again without a restart",
            lambda: (p := _one_pod(api, settings)) and p["ready"] and p,
            600, 3,
        )  # fmt: skip
        timings["Ready after the grant"] = time.monotonic() - t1
        assert back["name"] == fresh["name"], back
        assert back["restarts"] == 0, back
        result = check(
            api, settings, "verify", f"--marker={marker}", f"--count={ACCESS_EVENTS}",
            f"--offsets={json.dumps(offsets)}", "--timeout=600", timeout=900,
        )  # fmt: skip
        print(f"access: {result}; timings { ({k: round(v) for k, v in timings.items()}) }")
        assert result["missing"] == 0, result
        assert result["processed"] == ACCESS_EVENTS, result
        assert result["result"] == "ok", result
        if consumer_env(api, settings).get("PROCESSING_GUARANTEE") == "exactly-once":
            assert result.get("duplicates", 0) == 0, result
        assert "Traceback" not in _log(api, settings, fresh["name"])
    finally:
        current = _user(api, settings, name)
        if current is not None and current["spec"]["authorization"]["acls"] != original:
            _set_acls(api, settings, name, original)
        hold_consumer(api, settings, None, replicas)
