"""KAFKA_SECURITY=sasl_ssl with KAFKA_BROKERS=3: three SASL_SSL brokers (one CA, the SCRAM users and the
services' ACLs of scripts/kafka_security.py), mutual TLS between brokers and controllers, and a broker
killed mid-stream while the producer and consumer users run exactly-once: nothing lost, nothing twice.

The secure cluster runs on FAILOVER_KAFKA_PORT + 50 for this module only (its ports end below the plain
cluster's), and is stopped after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from login_common.kafka import ensure_topics
from tests.failover.conftest import (
    ClusterHandle,
    Pipeline,
    drop_topics,
    failover_port,
    start_cluster,
    stop_cluster,
)
from tests.failover.harness import Consumer, OutputWatch, wait_until
from tests.failover.test_faults import assert_replicated, busiest_broker, kill_and_restart, run
from tests.observability.scripts import load as load_script

pytestmark = [pytest.mark.failover, pytest.mark.slow, pytest.mark.timeout(3600)]

EVENTS = int(os.environ.get("FAILOVER_SECURE_EVENTS", "30000"))
TOPICS = {"input": "user-login", "output": "processed-logins", "dlq": "user-login-dlq"}  # the ACLs' names
GROUP = "login-consumer"


@pytest.fixture(scope="module")
def secure() -> Iterator[ClusterHandle]:
    port = failover_port() + 50
    started = start_cluster(port, "sasl_ssl")
    lk = load_script("local_kafka")
    kc = load_script("kafka_cluster")
    handle = ClusterHandle(kc.Cluster(port, 3, lk.CACHE, secure=True), lk)
    try:
        handle.restore()
        yield handle
    finally:
        if started and not os.environ.get("FAILOVER_KEEP_CLUSTER"):
            stop_cluster(port, "sasl_ssl")


def test_a_broker_killed_under_sasl_ssl_loses_nothing_exactly_once(
    secure: ClusterHandle, tmp_path: Path
) -> None:
    admin_config = secure.config("admin")
    internal = ("network-repartition", "network-state", "detector-state")
    drop_topics(secure, [*TOPICS.values(), *(f"{GROUP}-{n}" for n in internal)])
    wait_until(lambda: not set(TOPICS.values()) & set(_topics(admin_config)), 120, "old topics gone", 1.0)
    ensure_topics(admin_config, {TOPICS["input"]: 6, TOPICS["output"]: 6, TOPICS["dlq"]: 1})
    tls = secure.cluster.secure_broker()
    assert tls is not None
    env = {
        **tls.client_env("consumer"),
        "BOOTSTRAP_SERVERS": secure.bootstrap,
        "GROUP_ID": GROUP,
        "PROCESSING_GUARANTEE": "exactly-once",
        "TRANSACTIONAL_ID": f"{GROUP}-failover",
    }
    watch = OutputWatch(admin_config, TOPICS["output"]).start()
    consumer = Consumer(env, tmp_path / "consumer.log")
    pipe = Pipeline(secure, "exactly-once", dict(TOPICS), GROUP, consumer, watch, events=EVENTS)
    pipe.producer = secure.config("producer")  # the producer user: WRITE on user-login, IDEMPOTENT_WRITE
    try:
        wait_until(lambda: consumer.get("/ready")[0] == 200 or not consumer.alive(), 180, "consumer /ready")
        assert consumer.alive(), f"the consumer exited; see {consumer.log_path}"

        def fault() -> dict[str, Any]:
            return kill_and_restart(pipe, *busiest_broker(pipe))

        run(pipe, "leader-kill-sasl_ssl", fault)
        assert_replicated(secure, pipe.all_topics())
    finally:
        if pipe.load is not None:
            pipe.load.stop()
        watch.stop()
        if consumer.alive():
            consumer.stop()
        secure.restore()


def _topics(config: dict[str, Any]) -> list[str]:
    from login_common.kafka import admin

    return list(admin(config).list_topics(timeout=10).topics)


def test_secure_cluster_nodes_talk_tls(secure: ClusterHandle) -> None:
    for node in secure.cluster.nodes:
        text = (node.folder / "server.properties").read_text()
        if node.role == "broker":
            assert f"listeners=SASL_SSL://{node.address}" in text
        else:
            assert f"listeners=CONTROLLER://{node.address}" in text
        assert "listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:SSL" in text
        assert "listener.name.controller.ssl.client.auth=required" in text
