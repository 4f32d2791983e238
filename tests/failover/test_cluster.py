"""The local three-broker cluster itself (scripts/local_kafka.py with KAFKA_BROKERS=3): its nodes, and the
replication of every topic the project and Kafka create on it (RF 3, min.insync.replicas 2)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from login_common.kafka import admin, ensure_topics, replication
from tests.failover.conftest import ClusterHandle, failover_host, failover_port
from tests.failover.harness import ROOT

pytestmark = [pytest.mark.failover]


def local_kafka(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_kafka.py"), *args],
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "KAFKA_PORT": str(failover_port()),
            "KAFKA_HOST": failover_host(),
            "BOOTSTRAP_SERVERS": "",
            **env,
        },
        check=False,
        timeout=300,
    )


def min_isr(config: dict[str, Any], topics: list[str]) -> dict[str, str]:
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    client = admin(config)
    futures = client.describe_configs([ConfigResource("topic", t) for t in topics])
    return {r.name: f.result(timeout=30)["min.insync.replicas"].value for r, f in futures.items()}


def replicas(config: dict[str, Any], topics: list[str]) -> dict[str, set[int]]:
    md = admin(config).list_topics(timeout=10)
    return {t: {len(p.replicas) for p in md.topics[t].partitions.values()} for t in topics}


def test_three_brokers_three_controllers_each_with_its_own_ports(restored: ClusterHandle) -> None:
    cluster = restored.cluster
    status = local_kafka("status", KAFKA_BROKERS="3")
    assert status.returncode == 0, status.stderr
    for node in cluster.nodes:
        assert node.name in status.stdout
        assert node.address in status.stdout
    assert "quorum leader" in status.stdout
    assert len({n.port for n in cluster.nodes} | {n.metrics_port for n in cluster.nodes}) == 12
    assert len({n.folder for n in cluster.nodes}) == 6
    # as the README shows it
    again = subprocess.run(
        [
            "make",
            "-s",
            "kafka-up",
            "KAFKA_BROKERS=3",
            f"KAFKA_PORT={failover_port()}",
            f"KAFKA_HOST={failover_host()}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "BOOTSTRAP_SERVERS")},
        check=False,
        timeout=300,
    )
    assert again.returncode == 0, again.stderr
    assert "3 brokers at" in again.stdout
    assert "already running" in again.stdout
    # KAFKA_BROKERS=1 (the default) on the same port finds the cluster instead of starting a broker
    single = local_kafka("up", KAFKA_BROKERS="1")
    assert single.returncode == 0, single.stderr
    assert "cluster runs on KAFKA_PORT" in single.stdout, single.stdout


def test_project_topics_and_kafkas_own_topics_have_3_replicas_and_min_isr_2(restored: ClusterHandle) -> None:
    config = restored.config()
    assert replication(config) == (3, 2)
    name = f"rf-{uuid.uuid4().hex[:8]}"
    ensure_topics(config, {name: 3})
    # the transaction state and the offsets topics, as the consumer's first transaction creates them
    producer = Producer({**config, "transactional.id": f"rf-{name}"})
    producer.init_transactions(60)
    producer.begin_transaction()
    producer.produce(name, b"x")
    group = Consumer({**config, "group.id": name})
    try:
        producer.send_offsets_to_transaction(
            [TopicPartition(name, 0, 1)], group.consumer_group_metadata(), 60
        )
        producer.commit_transaction(60)
    finally:
        group.close()
    internal = ["__consumer_offsets", "__transaction_state"]
    assert replicas(config, [name, *internal]) == {t: {3} for t in [name, *internal]}
    assert min_isr(config, [name, *internal]) == {name: "2", **dict.fromkeys(internal, "2")}
    # the cluster-wide default (KRaft keeps it in the metadata): what a topic without its own gets
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    client = admin(config)
    (future,) = client.describe_configs([ConfigResource("broker", "1")]).values()
    assert future.result(timeout=30)["min.insync.replicas"].value == "2"
    admin(config).delete_topics([name])
