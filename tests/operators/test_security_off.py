"""Security off on the local node (issue 18: KEDA scales the consumer "with security on and off").

`make k8s-node-plaintext` adds a plaintext Kafka `login-stream-plain` beside the secured one
(k8s/kafka/plaintext: k8s/kafka/ with the single listener `plain` on 9092, no TLS, no authentication, no
authorization) and the release `login-stream-plain` against it (k8s/values/local-node/plaintext.yaml:
`kafka.security.enabled: false`, KEDA on: its ScaledObject has no TriggerAuthentication). Then tests/e2e's
own tests, pointed at that release (E2E_RELEASE, E2E_KAFKA), must pass as they do with security on: Kafka
and its topics Ready, both Deployments available, events and a dead letter through, and KEDA scaling the
consumer up on the group's lag and back down once drained. `make k8s-node-plaintext-down` removes both
afterwards, leaving the secured deployment as it was.
"""

from __future__ import annotations

import re
import subprocess

import pytest

from tests.operators.conftest import ROOT, Cluster

pytestmark = pytest.mark.timeout(3600)
APP_NS, RELEASE, KAFKA = "login-stream", "login-stream-plain", "login-stream-plain"
# tests/e2e's tests that do not assume security on or a scraped release (this one is not scraped: its
# metrics would mix with the secured release's in the same namespace and consumer group)
E2E_TESTS = "kafka_is_ready or deployment_is_available or events_flow or keda_scales"


def make(*args: str, timeout: float = 1800) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_keda_scales_the_consumer_with_security_off(cluster: Cluster) -> None:
    up = make("k8s-node-plaintext")
    try:
        said = f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        assert up.returncode == 0, f"make k8s-node-plaintext failed:\n{said}"
        kafka = cluster.get("kafka", KAFKA, "-n", APP_NS)
        listeners = kafka["spec"]["kafka"]["listeners"]
        assert [(x["name"], x["port"], x["tls"], x.get("authentication")) for x in listeners] == [
            ("plain", 9092, False, None)
        ], listeners
        assert "authorization" not in kafka["spec"]["kafka"]
        consumer = cluster.get("deployment", f"{RELEASE}-consumer", "-n", APP_NS)
        container = consumer["spec"]["template"]["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env.get("SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT", env
        assert env["BOOTSTRAP_SERVERS"] == f"{KAFKA}-kafka-bootstrap:9092", env
        so = cluster.get("scaledobject", f"{RELEASE}-consumer", "-n", APP_NS)
        assert all("authenticationRef" not in t for t in so["spec"]["triggers"]), so["spec"]["triggers"]
        assert cluster.get("kafkausers", "-n", APP_NS, "-l", f"strimzi.io/cluster={KAFKA}")["items"] == []
        out = make(
            "e2e-node", f"E2E_RELEASE={RELEASE}", f"E2E_KAFKA={KAFKA}",
            f"PYTEST_ARGS=-p no:cacheprovider -s -k '{E2E_TESTS}'", timeout=3000,
        )  # fmt: skip
        summary = out.stdout.strip().splitlines()[-1:] or [""]
        print(f"make e2e-node (security off): {summary[0]}")
        for line in out.stdout.splitlines():
            if line.startswith("keda:") or " keda: " in line:
                print(line.strip())
        assert out.returncode == 0, f"make e2e-node failed:\n{out.stdout[-5000:]}\n{out.stderr[-2000:]}"
        assert re.search(r"\b5 passed", summary[0]), summary
        assert "failed" not in summary[0], summary
        assert "skipped" not in summary[0], summary
    finally:
        down = make("k8s-node-plaintext-down", timeout=900)
        assert down.returncode == 0, f"make k8s-node-plaintext-down failed:\n{down.stderr[-2000:]}"
