"""The Strimzi Kafka's size, both ways: k8s/kafka/ (the kind dev loop, one dual-role node) and
k8s/kafka/production (three brokers from one value, three controllers), rendered offline with kubectl's
kustomize (`make kafka-production`) and checked against Strimzi 1.2.0's CRDs.

Whatever the broker count, the replication settings follow it: factor min(3, brokers) for
default.replication.factor, the offsets and the transaction state topics and every KafkaTopic,
min.insync.replicas and transaction.state.log.min.isr one less (at least 1). The Strimzi keys used here
(rack.topologyKey, template.podDisruptionBudget.maxUnavailable, KafkaTopic replicas) are pinned against
Strimzi's source in tests/chart/test_upstream.py.
"""

from __future__ import annotations

import subprocess
from functools import cache
from typing import Any

import pytest
import yaml

from tests.chart.conftest import ROOT, schema_problems, tool
from tests.chart.kube_schemas import Obj, Validator, load_file

KAFKA = ROOT / "k8s" / "kafka"
PRODUCTION = KAFKA / "production"


def dev_objects() -> list[Obj]:
    return [*load_file(KAFKA / "kafka.yaml"), *load_file(KAFKA / "topics.yaml")]


@cache
def rendered(target: str) -> tuple[Obj, ...]:
    """`make -s <target>`'s output (kafka-production, kafka-node-ha, kafka-plaintext)."""
    done = subprocess.run(
        ["make", "-s", "--no-print-directory", target, f"KUBECTL={tool('kubectl')}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return tuple(o for o in yaml.safe_load_all(done.stdout) if o)


def production_objects() -> tuple[Obj, ...]:
    """`make -s kafka-production`'s output: what production applies."""
    return rendered("kafka-production")


def kinds(objs: Any, kind: str) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind]


def brokers_of(objs: Any) -> int:
    return sum(p["spec"]["replicas"] for p in kinds(objs, "KafkaNodePool") if "broker" in p["spec"]["roles"])


def replication(brokers: int) -> tuple[int, int]:
    """What the project runs with: login_devtools/kafka_cluster.py and login_common.kafka say the same."""
    factor = min(3, brokers)
    return factor, max(1, factor - 1)


@pytest.mark.parametrize("profile", ["dev", "production"])
def test_replication_follows_the_broker_count(profile: str) -> None:
    objs = dev_objects() if profile == "dev" else list(production_objects())
    brokers = brokers_of(objs)
    assert brokers == (1 if profile == "dev" else 3)
    factor, min_isr = replication(brokers)
    (kafka,) = kinds(objs, "Kafka")
    config = kafka["spec"]["kafka"]["config"]
    for key in (
        "default.replication.factor",
        "offsets.topic.replication.factor",
        "transaction.state.log.replication.factor",
    ):
        assert config[key] == factor, key
    assert config["min.insync.replicas"] == min_isr
    assert config["transaction.state.log.min.isr"] == min_isr
    topics = kinds(objs, "KafkaTopic")
    assert len(topics) == 6
    assert {t["metadata"]["name"]: t["spec"]["replicas"] for t in topics} == {
        t["metadata"]["name"]: factor for t in topics
    }
    assert kafka["spec"]["kafka"]["template"]["podDisruptionBudget"]["maxUnavailable"] == 1


def test_the_broker_count_is_one_value() -> None:
    (sizing,) = load_file(PRODUCTION / "sizing.yaml")
    assert sizing["metadata"]["annotations"]["config.kubernetes.io/local-config"] == "true"
    assert brokers_of(production_objects()) == sizing["spec"]["brokers"]
    assert not kinds(production_objects(), "KafkaSizing"), "the sizing is kustomize's input, never applied"
    kustomization = yaml.safe_load((PRODUCTION / "kustomization.yaml").read_text())
    (replacement,) = kustomization["replacements"]
    source = {"kind": "KafkaSizing", "name": "login-stream", "fieldPath": "spec.brokers"}
    assert replacement["source"] == source


def test_production_has_its_own_controllers_rack_awareness_and_no_kind_node_port() -> None:
    objs = production_objects()
    pools = {p["metadata"]["name"]: p["spec"] for p in kinds(objs, "KafkaNodePool")}
    assert set(pools) == {"controller", "broker"}
    assert pools["controller"]["roles"] == ["controller"]
    assert pools["controller"]["replicas"] == 3  # a quorum that survives one controller
    assert pools["broker"]["roles"] == ["broker"]
    (kafka,) = kinds(objs, "Kafka")
    assert kafka["spec"]["kafka"]["rack"] == {"topologyKey": "topology.kubernetes.io/zone"}
    dev_kafka = next(o for o in dev_objects() if o["kind"] == "Kafka")
    assert "rack" not in dev_kafka["spec"]["kafka"], "kind's nodes have no zone label: kafka-init would fail"
    dev_listeners = [x for x in dev_kafka["spec"]["kafka"]["listeners"] if x["name"] != "external"]
    assert kafka["spec"]["kafka"]["listeners"] == dev_listeners
    # apart from size, replication, rack and the node port, production is the dev loop's cluster
    same = {k: v for k, v in kafka["spec"]["kafka"].items() if k not in ("config", "rack", "listeners")}
    assert same == {k: v for k, v in dev_kafka["spec"]["kafka"].items() if k not in ("config", "listeners")}
    assert kafka["spec"]["entityOperator"] == dev_kafka["spec"]["entityOperator"]


def test_production_manifests_are_schema_valid(validator: Validator, crd_dir: Any) -> None:
    problems = schema_problems(list(production_objects()), validator)
    assert not problems, "\n".join(problems)


# --- the local node's test clusters (docs/failover.md "Strimzi", docs/kubernetes.md "Security off") ---


def by_cluster(objs: Any, cluster: str) -> bool:
    return all(o["metadata"]["labels"]["strimzi.io/cluster"] == cluster for o in objs)


def topic_names(objs: Any) -> set[str]:
    return {t["spec"].get("topicName", t["metadata"]["name"]) for t in kinds(objs, "KafkaTopic")}


def test_the_node_ha_cluster_is_production_sized_down_with_the_same_topics() -> None:
    """k8s/kafka/node-ha: production's broker count and replication, small enough for the 2-core node."""
    objs = rendered("kafka-node-ha")
    prod = production_objects()
    assert by_cluster(objs, "login-stream-ha")
    (kafka,) = kinds(objs, "Kafka")
    (prod_kafka,) = kinds(prod, "Kafka")
    assert kafka["metadata"]["name"] == "login-stream-ha"
    assert brokers_of(objs) == brokers_of(prod) == 3
    assert kafka["spec"]["kafka"]["config"] == prod_kafka["spec"]["kafka"]["config"]
    assert kafka["spec"]["kafka"]["listeners"] == prod_kafka["spec"]["kafka"]["listeners"]
    assert "rack" not in kafka["spec"]["kafka"], "the node has no zone label: kafka-init would fail"
    assert topic_names(objs) == topic_names(prod)
    assert {t["spec"]["replicas"] for t in kinds(objs, "KafkaTopic")} == {3}
    cpu = {"50m": 0.05, "100m": 0.1}
    pools = kinds(objs, "KafkaNodePool")
    requested = sum(p["spec"]["replicas"] * cpu[p["spec"]["resources"]["requests"]["cpu"]] for p in pools)
    assert requested <= 0.5, f"{requested} CPUs requested: the node has 2 for everything"


def test_the_plaintext_cluster_is_the_dev_cluster_without_security() -> None:
    objs = rendered("kafka-plaintext")
    assert by_cluster(objs, "login-stream-plain")
    (kafka,) = kinds(objs, "Kafka")
    plain = {"name": "plain", "port": 9092, "type": "internal", "tls": False}
    assert kafka["spec"]["kafka"]["listeners"] == [plain]
    assert "authorization" not in kafka["spec"]["kafka"]
    assert topic_names(objs) == topic_names(dev_objects())


@pytest.mark.parametrize("target", ["kafka-node-ha", "kafka-plaintext"])
def test_the_node_test_clusters_are_schema_valid(target: str, validator: Validator, crd_dir: Any) -> None:
    problems = schema_problems(list(rendered(target)), validator)
    assert not problems, "\n".join(problems)
