"""The chart and manifests for the consumer's stage topology (issue #10, docs/kubernetes.md "Scaling").

KEDA follows the lag of every stage's input topic, the kind cluster declares the internal topics as
KafkaTopics, and the new settings reach the consumer. Names and defaults come from the consumer itself
(``login_consumer``), so a rename there fails here.

What the chart relies on in KEDA's Kafka scaler is pinned below from its source: kedacore/keda v2.20.2
(commit 68a5b5028f35b22d50597c69819ab32c4e92f21a), ``pkg/scalers/kafka_scaler.go`` (``kafkaMetadata``,
``Validate``, ``getTopicPartitions``, ``getLagForPartition``, ``getTotalLag``,
``GetMetricSpecForScaling``), ``pkg/scalers/scaler.go`` (``GenerateMetricNameWithIndex``),
``pkg/util/normalize_string.go``, ``pkg/scalers/scalersconfig/typed_config.go`` (bools by Go's
``strconv.ParseBool``; unknown metadata keys are only reported behind the KEDA_CHECK_UNEXPECTED_SCALERS_PARAMS
flag, otherwise ignored) and ``controllers/keda/hpa.go`` (``getScaledObjectMetricSpecs``: one HPA metric per
trigger, a metric name defined twice is an error).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml

from login_consumer.config import ConsumerSettings
from login_consumer.detectors.names import DETECTOR_NAMES, parse_detectors
from login_consumer.stores.changelog import TOPIC_CONFIG
from login_consumer.topics import REPARTITION_CONFIG
from tests.chart.conftest import ROOT, Render, RenderError, one
from tests.chart.kube_schemas import Obj

CONSUMER = "login-stream-consumer"
KEDA = {"keda.enabled": True}

# kafkaMetadata's trigger-metadata keys (struct tags with order=triggerMetadata); keys with
# order=...resolvedEnv may also be given as <key>FromEnv. A key outside these is silently ignored by KEDA.
KAFKA_TRIGGER_KEYS = {
    "bootstrapServers",
    "consumerGroup",
    "topic",
    "partitionLimitation",
    "lagThreshold",
    "activationLagThreshold",
    "offsetResetPolicy",
    "allowIdleConsumers",
    "excludePersistentLag",
    "scaleToZeroOnInvalidOffset",
    "limitToPartitionsWithLag",
    "ensureEvenDistributionOfPartitions",
    "version",
    "tls",
    "unsafeSsl",
    "sasl",
    "saslTokenProvider",
    "awsRegion",
}
FROM_ENV_KEYS = {"bootstrapServers", "consumerGroup", "topic"}
OFFSET_RESET_POLICIES = {"latest", "earliest"}  # enum=latest;earliest
GO_BOOLS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def keda_metric_name(index: int, topic: str) -> str:
    """GenerateMetricNameWithIndex(i, NormalizeString("kafka-" + topic)) for a trigger with a topic."""
    name = f"kafka-{topic}"
    for char in "/.:%()":
        name = name.replace(char, "-")
    return f"s{index}-{name}"


def keda_problems(trigger: dict[str, Any]) -> list[str]:
    """What KEDA 2.20.2's kafka scaler would reject, or would read differently from what the chart means."""
    meta: dict[str, str] = trigger["metadata"]
    problems = [
        f"unknown key {k}"
        for k in meta
        if k not in KAFKA_TRIGGER_KEYS | {f"{e}FromEnv" for e in FROM_ENV_KEYS}
    ]
    topic = meta.get("topic", "")
    # without a topic the scaler sums every topic the group has offsets on (both stages: an event in flight
    # counts twice) and limitToPartitionsWithLag is refused; a list is no topic (DescribeTopics expects 1)
    if not topic or "," in topic:
        problems.append(f"topic must be one topic, got {topic!r}")
    if int(meta.get("lagThreshold", "10")) <= 0:
        problems.append("lagThreshold must be positive")
    if meta.get("offsetResetPolicy", "latest") not in OFFSET_RESET_POLICIES:
        problems.append(f"offsetResetPolicy {meta.get('offsetResetPolicy')!r}")
    for key in ("allowIdleConsumers", "excludePersistentLag", "limitToPartitionsWithLag"):
        if key in meta and meta[key] not in GO_BOOLS:
            problems.append(f"{key}: {meta[key]!r} is no Go bool")
    allow_idle = meta.get("allowIdleConsumers", "false").lower() in ("1", "t", "true")
    limit = meta.get("limitToPartitionsWithLag", "false").lower() in ("1", "t", "true")
    if allow_idle and limit:
        problems.append("allowIdleConsumers and limitToPartitionsWithLag cannot be set simultaneously")
    return problems


def triggers(objs: list[Obj]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = one(objs, "ScaledObject")["spec"]["triggers"]
    return found


def env(objs: list[Obj]) -> dict[str, str]:
    containers = one(objs, "Deployment", CONSUMER)["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e["value"] for e in containers[0]["env"] if "value" in e}


def kafka_topics() -> dict[str, Obj]:
    docs = yaml.safe_load_all((ROOT / "k8s/kafka/topics.yaml").read_text())
    return {d["metadata"]["name"]: d for d in docs if d and d["kind"] == "KafkaTopic"}


# --- KEDA: every stage's input topic -----------------------------------------------------------------


def test_keda_follows_the_lag_of_every_stage(render: Render) -> None:
    objs = render(**KEDA)
    settings = ConsumerSettings(group_id=env(objs)["GROUP_ID"], input_topic=env(objs)["INPUT_TOPIC"])
    found = triggers(objs)
    assert [(t["type"], t.get("name")) for t in found] == [
        ("kafka", "user-stage"),
        ("kafka", "network-stage"),
    ]
    assert [t["metadata"]["topic"] for t in found] == [settings.input_topic, settings.repartition_topic()]
    # one consumer group runs both stages: every trigger reads that group's offsets
    assert {t["metadata"]["consumerGroup"] for t in found} == {settings.group_id}
    assert len({t["metadata"]["bootstrapServers"] for t in found}) == 1
    for t in found:
        assert keda_problems(t) == [], t
        # the consumer starts a partition without committed offset at the beginning: so must the lag
        assert t["metadata"]["offsetResetPolicy"] == settings.consumer_config()["auto.offset.reset"]
        # capped at the topic's partitions (getTotalLag's upper bound); the chart never wants idle consumers
        assert t["metadata"]["allowIdleConsumers"] == "false"
        assert t["metadata"]["lagThreshold"] == "1000"
    # one HPA metric per trigger, each name unique (hpa.go refuses a name defined twice)
    names = [keda_metric_name(i, t["metadata"]["topic"]) for i, t in enumerate(found)]
    assert len(set(names)) == len(names) == 2


def test_the_repartition_trigger_follows_the_group_id(render: Render) -> None:
    objs = render(**KEDA, **{"consumer.groupId": "fraud.eu", "kafka.topics.input": "logins"})
    user, network = triggers(objs)
    assert user["metadata"]["topic"] == "logins"
    assert network["metadata"]["topic"] == ConsumerSettings(group_id="fraud.eu").repartition_topic()
    assert network["metadata"]["consumerGroup"] == "fraud.eu"


@pytest.mark.parametrize(
    "detectors",
    [
        [],
        ["all"],
        ["none"],
        ["brute_force", "new_device"],
        ["credential_stuffing"],
        ["impossible_travel", "credential_stuffing"],
    ],
)
def test_the_network_trigger_exists_exactly_when_the_network_stage_runs(
    render: Render, detectors: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # without the network stage the repartition topic is never created: a trigger on it would only error
    value = "{" + ",".join(detectors) + "}" if detectors else "null"  # --set ...={} is [""]
    objs = render(**KEDA, **{"consumer.detectors": value})
    rendered = env(objs)
    text = rendered.get("DETECTORS", "all")  # the consumer's default when the chart renders none
    runs = "credential_stuffing" in parse_detectors(text)
    assert runs is ("all" in detectors or "credential_stuffing" in detectors)
    monkeypatch.setenv("DETECTORS", text)
    assert ConsumerSettings().network_stage is runs  # what the consumer reads from the rendered value
    stages = [t["name"] for t in triggers(objs)]
    assert stages == (["user-stage", "network-stage"] if runs else ["user-stage"])


def test_detectors_render_only_when_not_the_default(render: Render) -> None:
    assert "DETECTORS" not in env(render())
    assert (
        env(render(**{"consumer.detectors": "{brute_force,new_device}"}))["DETECTORS"]
        == "brute_force,new_device"
    )
    assert env(render(**{"consumer.detectors": "{none}"}))["DETECTORS"] == "none"


def test_the_chart_knows_the_detectors_the_consumer_knows() -> None:
    schema = json.loads((ROOT / "charts" / "login-stream" / "values.schema.json").read_text())
    enum = schema["properties"]["consumer"]["properties"]["detectors"]["items"]["enum"]
    assert enum == ["all", "none", *DETECTOR_NAMES]


def test_detectors_is_refused_in_the_extra_environment(render: Render) -> None:
    with pytest.raises(RenderError):
        render(**{"consumer.env.DETECTORS": "none"})


def test_keda_scaler_options(render: Render) -> None:
    for t in triggers(render(**KEDA)):
        assert t["metadata"]["limitToPartitionsWithLag"] == "false"
        assert t["metadata"]["excludePersistentLag"] == "false"
    on = {"keda.limitToPartitionsWithLag": True, "keda.excludePersistentLag": True, "keda.lagThreshold": 250}
    for t in triggers(render(**KEDA, **on)):
        assert t["metadata"]["limitToPartitionsWithLag"] == "true"
        assert t["metadata"]["excludePersistentLag"] == "true"
        assert t["metadata"]["lagThreshold"] == "250"
        assert keda_problems(t) == []


def test_the_pinned_keda_rules_catch_what_keda_rejects() -> None:
    good = {"topic": "a", "lagThreshold": "5", "offsetResetPolicy": "earliest", "allowIdleConsumers": "false"}
    assert keda_problems({"metadata": good}) == []
    assert keda_problems({"metadata": {**good, "topic": "a,b"}})
    assert keda_problems({"metadata": {**good, "topic": ""}})
    assert keda_problems({"metadata": {**good, "limitToPartitionWithLag": "true"}})  # a typo: ignored by KEDA
    assert keda_problems({"metadata": {**good, "allowIdleConsumers": "yes"}})
    assert keda_problems(
        {"metadata": {**good, "allowIdleConsumers": "true", "limitToPartitionsWithLag": "true"}}
    )
    assert keda_problems({"metadata": {**good, "offsetResetPolicy": "smallest"}})
    assert keda_problems({"metadata": {**good, "topicFromEnv": "INPUT_TOPIC"}}) == []


# --- partitions: the ceiling of parallelism ----------------------------------------------------------


def test_keda_max_replicas_defaults_to_the_input_partitions(render: Render) -> None:
    assert one(render(**KEDA), "ScaledObject")["spec"]["maxReplicaCount"] == 6
    twelve = render(**KEDA, **{"kafka.inputPartitions": 12})
    assert one(twelve, "ScaledObject")["spec"]["maxReplicaCount"] == 12
    four = render(**KEDA, **{"kafka.inputPartitions": 12, "keda.maxReplicas": 4})
    assert one(four, "ScaledObject")["spec"]["maxReplicaCount"] == 4
    with pytest.raises(RenderError, match=r"keda.maxReplicas \(13\) exceeds kafka.inputPartitions \(12\)"):
        render(**KEDA, **{"kafka.inputPartitions": 12, "keda.maxReplicas": 13})
    with pytest.raises(RenderError, match=r"keda.minReplicas \(7\) exceeds keda.maxReplicas \(6\)"):
        render(**KEDA, **{"keda.minReplicas": 7})


def test_kind_values_with_keda_scale_up_to_the_partitions_of_every_stage(render: Render) -> None:
    objs = render(ROOT / "k8s/values/login-stream.yaml", **KEDA)
    topics = kafka_topics()
    scaled = one(objs, "ScaledObject")
    for t in triggers(objs):
        # every stage's input topic is declared, so it exists before the first consumer starts
        declared = topics[t["metadata"]["topic"]]
        assert declared["spec"]["partitions"] == scaled["spec"]["maxReplicaCount"]


# --- the new settings --------------------------------------------------------------------------------


def test_new_settings_reach_the_consumer_with_the_services_defaults(
    render: Render, monkeypatch: pytest.MonkeyPatch
) -> None:
    rendered = env(render())
    fields = ConsumerSettings.model_fields
    assert rendered["COMMIT_INTERVAL_MS"] == str(fields["commit_interval_ms"].default)
    assert rendered["MAX_IN_FLIGHT"] == str(fields["max_in_flight"].default)
    assert (
        rendered["AUTO_CREATE_INTERNAL_TOPICS"] == str(fields["auto_create_internal_topics"].default).lower()
    )
    sets = {
        "consumer.commitIntervalMs": 250,
        "consumer.maxInFlight": 5000,
        "consumer.autoCreateInternalTopics": False,
    }
    rendered = env(render(**sets))
    for name, value in rendered.items():
        monkeypatch.setenv(name, value)
    settings = ConsumerSettings()  # the rendered environment is a configuration the consumer accepts
    assert (settings.commit_interval_ms, settings.max_in_flight) == (250, 5000)
    assert settings.auto_create_internal_topics is False


@pytest.mark.parametrize(
    "bad",
    [
        {"consumer.commitIntervalMs": 5},
        {"consumer.maxInFlight": "lots"},
        {"consumer.autoCreateInternalTopics": "maybe"},
        {"keda.maxReplicas": -1},
        {"keda.limitToPartitionsWithLag": "sometimes"},
    ],
)
def test_values_schema_rejects_bad_stage_settings(render: Render, bad: dict[str, object]) -> None:
    with pytest.raises(RenderError, match="schema"):
        render(**bad)


# --- internal topics: KafkaTopics on the kind cluster ------------------------------------------------


def test_kind_values_declare_every_internal_topic(render: Render) -> None:
    rendered = env(render(ROOT / "k8s/values/login-stream.yaml"))
    assert rendered["AUTO_CREATE_INTERNAL_TOPICS"] == "false"
    settings = ConsumerSettings(group_id=rendered["GROUP_ID"], input_topic=rendered["INPUT_TOPIC"])
    topics = kafka_topics()
    kafka = next(
        d for d in yaml.safe_load_all((ROOT / "k8s/kafka/kafka.yaml").read_text()) if d["kind"] == "Kafka"
    )
    values = yaml.safe_load((ROOT / "k8s/values/login-stream.yaml").read_text())
    partitions = topics[settings.input_topic]["spec"]["partitions"]
    assert partitions == values["kafka"]["inputPartitions"]
    wanted = {
        settings.repartition_topic(): REPARTITION_CONFIG,
        settings.network_state_topic(): TOPIC_CONFIG,
        settings.changelog_topic(): TOPIC_CONFIG,
    }
    for name, config in wanted.items():
        assert name in topics, f"{name} is not declared in k8s/kafka/topics.yaml"
        topic = topics[name]
        assert "topicName" not in topic["spec"]  # the resource name is the topic name
        assert topic["metadata"]["namespace"] == kafka["metadata"]["namespace"]
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
        # the consumer refuses a changelog whose partitions differ from its source's
        assert topic["spec"]["partitions"] == partitions, name
        declared = {k: str(v) for k, v in topic["spec"]["config"].items()}
        assert declared.items() >= dict(config).items(), f"{name}: {declared} lacks {config}"
