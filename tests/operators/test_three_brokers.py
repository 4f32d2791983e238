"""Three Strimzi brokers on the local node (issue 23): a broker pod deleted under load loses nothing.

`make k8s-node-ha` applies k8s/kafka/node-ha (the production Kafka of k8s/kafka/production: three brokers
from production/sizing.yaml's one value, three KRaft controllers, replication 3, min.insync.replicas 2,
Strimzi's PodDisruptionBudget; sized down for this node, docs/failover.md "Strimzi") as Kafka
`login-stream-ha`, and the release `login-stream-ha` against it with exactly-once
(k8s/values/local-node/ha.yaml). The test reads back what Strimzi made of it (three broker pods, the
replication settings on the Kafka and the topics), then runs tests/e2e's broker test pointed at it
(E2E_RELEASE, E2E_KAFKA): a broker pod deleted while E2E_BROKER_EVENTS events stream in at
E2E_BROKER_RATE per second, Strimzi recreates it, every event is on the output exactly once, and the
longest time without output is printed. `make k8s-node-ha-down` removes both afterwards.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest

from tests.operators.conftest import ROOT, Cluster

pytestmark = pytest.mark.timeout(3600)
APP_NS, RELEASE, KAFKA = "login-stream", "login-stream-ha", "login-stream-ha"
EVENTS = os.environ.get("E2E_BROKER_EVENTS", "12000")
RATE = os.environ.get("E2E_BROKER_RATE", "100")


def make(*args: str, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def test_a_broker_pod_deleted_under_load_with_three_brokers_loses_nothing(cluster: Cluster) -> None:
    up = make("k8s-node-ha")
    try:
        said = f"{up.stdout[-3000:]}\n{up.stderr[-3000:]}"
        assert up.returncode == 0, f"make k8s-node-ha failed:\n{said}"
        kafka = cluster.get("kafka", KAFKA, "-n", APP_NS)
        config = kafka["spec"]["kafka"]["config"]
        assert config["min.insync.replicas"] == 2, config
        assert config["default.replication.factor"] == 3, config
        assert config["transaction.state.log.min.isr"] == 2, config
        selector = f"strimzi.io/cluster={KAFKA},strimzi.io/broker-role=true"
        brokers = cluster.get("pods", "-n", APP_NS, "-l", selector)
        assert len(brokers["items"]) == 3, [p["metadata"]["name"] for p in brokers["items"]]
        topics = cluster.get("kafkatopics", "-n", APP_NS, "-l", f"strimzi.io/cluster={KAFKA}")["items"]
        assert {t["spec"]["replicas"] for t in topics} == {3}, topics
        out = subprocess.run(
            ["make", "--no-print-directory", "e2e-node", f"E2E_RELEASE={RELEASE}", f"E2E_KAFKA={KAFKA}",
             "PYTEST_ARGS=-p no:cacheprovider -s -k broker_pod_deleted"],
            cwd=ROOT, capture_output=True, text=True, timeout=3000, check=False,
            env={**os.environ, "E2E_BROKER_EVENTS": EVENTS, "E2E_BROKER_RATE": RATE},
        )  # fmt: skip
        summary = out.stdout.strip().splitlines()[-1:] or [""]
        for line in out.stdout.splitlines():
            if "broker: deleted" in line:
                print(line.strip())
        print(f"make e2e-node (three brokers): {summary[0]}")
        assert out.returncode == 0, f"make e2e-node failed:\n{out.stdout[-5000:]}\n{out.stderr[-2000:]}"
        assert re.search(r"\b1 passed", summary[0]), summary
    finally:
        down = make("k8s-node-ha-down", timeout=900)
        assert down.returncode == 0, f"make k8s-node-ha-down failed:\n{down.stderr[-2000:]}"
