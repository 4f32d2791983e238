"""What makes an acknowledged write survive a broker: both services' producers are idempotent with acks=all
(whatever else is configured), topics are replicated as the cluster allows, and the consumer's view of
the cluster's health (delivery/cluster.py) says degraded or refusing as the metadata shows.

The same settings are exercised against three real brokers, with brokers killed, in tests/failover.
"""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from login_common.kafka import MAX_REPLICATION_FACTOR
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.delivery.cluster import REFUSAL_SECONDS, ClusterHealth, Snapshot, watched_topics
from login_consumer.metrics import ConsumerMetrics
from login_producer.sink import DURABILITY, kafka_config


def test_the_producer_service_is_idempotent_with_acks_all_whatever_it_is_given() -> None:
    weakened: dict[str, Any] = {"acks": "1", "enable.idempotence": False, "linger.ms": 5}
    config = kafka_config(weakened)
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert config["linger.ms"] == 5  # the rest of the caller's settings apply
    assert DURABILITY == {"enable.idempotence": True, "acks": "all"}


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_the_consumers_producer_is_idempotent_with_acks_all_in_both_guarantees(guarantee: str) -> None:
    config = load_settings(ConsumerSettings, processing_guarantee=guarantee).producer_config()
    assert config["acks"] == "all"
    assert config["enable.idempotence"] is True
    assert ("transactional.id" in config) == (guarantee == "exactly-once")


def test_replication_is_at_most_three_and_the_setting_names_it() -> None:
    assert MAX_REPLICATION_FACTOR == 3
    assert ConsumerSettings.model_fields["topic_replication_factor"].default == 0  # 0 = from the cluster
    assert load_settings(ConsumerSettings, topic_replication_factor=2).topic_replication_factor == 2


def test_watched_topics_are_the_consumers_own_and_the_coordinators() -> None:
    settings = load_settings(ConsumerSettings, group_id="g", detectors="all")
    topics = watched_topics(settings)
    for name in ("user-login", "processed-logins", "user-login-dlq", "g-network-repartition"):
        assert name in topics
    assert {"g-network-state", "g-detector-state", "__consumer_offsets", "__transaction_state"} <= set(topics)
    plain = watched_topics(load_settings(ConsumerSettings, detectors="none", state_changelog=False))
    assert "g-network-repartition" not in plain


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _health(snapshot: Snapshot, clock: Clock) -> tuple[ClusterHealth, ConsumerMetrics]:
    registry = CollectorRegistry()
    metrics = ConsumerMetrics.create(registry)
    health = ClusterHealth(load_settings(ConsumerSettings), metrics, topics=["t"], clock=clock)
    health._snapshot = snapshot  # what check() reads from the metadata (proven on brokers in tests/failover)
    health._publish()
    return health, metrics


def _gauge(metrics: ConsumerMetrics, state: str | None = None) -> float:
    if state is None:
        return float(metrics.kafka.degraded._value.get())
    return float(metrics.kafka.partitions.labels(state)._value.get())


def test_a_healthy_cluster_is_ready_and_says_nothing() -> None:
    health, metrics = _health(Snapshot(brokers=3, cluster_size=3, checked=True), Clock())
    assert health.state() == (True, "")
    assert _gauge(metrics) == 0


def test_a_broker_down_is_degraded_but_writable() -> None:
    snapshot = Snapshot(brokers=2, cluster_size=3, under_replicated=12, checked=True)
    health, metrics = _health(snapshot, Clock())
    writable, what = health.state()
    assert writable
    assert what == "Kafka degraded: 2 of 3 brokers up; 12 partition(s) under-replicated"
    assert _gauge(metrics) == 1
    assert _gauge(metrics, "under_replicated") == 12


def test_partitions_below_min_isr_refuse_writes() -> None:
    snapshot = Snapshot(brokers=1, cluster_size=3, under_replicated=12, under_min_isr=12, checked=True)
    health, metrics = _health(snapshot, Clock())
    writable, what = health.state()
    assert not writable
    assert what.startswith("Kafka refuses writes: 1 of 3 brokers up; 12 partition(s) below min.insync")
    assert _gauge(metrics) == 2
    assert _gauge(metrics, "under_min_isr") == 12


def test_a_refusal_counts_by_code_and_refuses_for_a_while() -> None:
    from confluent_kafka import KafkaError

    clock = Clock()
    health, metrics = _health(Snapshot(brokers=3, cluster_size=3, checked=True), clock)
    assert not health.saw(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))  # not the cluster's health
    assert health.saw(KafkaError(KafkaError.NOT_ENOUGH_REPLICAS))
    assert metrics.kafka.refusals.labels("NOT_ENOUGH_REPLICAS")._value.get() == 1
    writable, what = health.state()
    assert not writable
    assert "NOT_ENOUGH_REPLICAS" in what
    clock.now += REFUSAL_SECONDS + 1
    assert health.state() == (True, "")
