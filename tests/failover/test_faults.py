"""Broker and controller faults under load on three real brokers, both guarantees (``make test-failover``).

Each test streams at least FAILOVER_EVENTS (100 000) login events at FAILOVER_RATE through the consumer
service while the fault happens, then counts: acknowledged inputs missing from the input topic or from the
output (lost), outputs beyond one per input (duplicates), and the longest silence of the output from the
fault on (the stall), next to the longest before it (the baseline: exactly-once output is visible once per
commit interval). Each prints one ``FAILOVER ...`` line with those figures (docs/failover.md).

  * the leader of the busiest partitions killed (kill -9) mid-stream, then started again;
  * a rolling restart of the three brokers (SIGTERM, start, in sync again) under load;
  * two brokers down: min.insync.replicas refuses writes (a probe write gets NOT_ENOUGH_REPLICAS, the
    load's acknowledgements stop: it blocks, nothing is acknowledged and lost), the consumer stays up with
    /ready 503 and login_consumer_kafka_degraded 2, and the pipeline recovers when one broker returns;
  * the KRaft quorum leader killed: another controller leads, the pipeline goes on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, Producer

from login_common.kafka import admin
from tests.failover.conftest import ClusterHandle, Pipeline, record
from tests.failover.harness import Verdict, read_ids, wait_until

pytestmark = [pytest.mark.failover, pytest.mark.slow, pytest.mark.timeout(3600)]

GUARANTEES = ["at-least-once", "exactly-once"]
WARMUP = 3_000  # outputs before the fault: it lands mid-stream, with the burst's backlog in flight
AFTER = 5_000  # outputs after the fault that prove the pipeline goes on
START = 600.0  # seconds a node may take to start again (a kill -9 leaves logs to recover; 2 busy cores)
# seconds: the output must flow again within this (the figure is printed); a loaded 2-core machine needs
# the margin when a killed broker held a partition's only in-sync replica and must start again first
STALL_LIMIT = float(os.environ.get("FAILOVER_STALL_LIMIT", "300"))
RESUME = 120.0  # seconds the output gets to go on without a killed broker before it is started again


def run(pipe: Pipeline, scenario: str, fault: Callable[[], dict[str, Any]]) -> Verdict:
    """Stream, wait for WARMUP outputs, do ``fault`` (it returns notes), stream on, stop, count."""
    load = pipe.start_load()
    watch = pipe.watch
    wait_until(lambda: watch.distinct >= WARMUP, 600, f"{WARMUP} outputs before the fault")
    first = watch.arrivals[0]
    fault_start = time.monotonic()
    done_before = watch.distinct
    in_flight = load.sent - done_before
    notes = fault()
    wait_until(lambda: watch.distinct >= done_before + AFTER, 600, f"{AFTER} outputs after the fault")
    load.stop()
    stopped = time.monotonic()
    acked = load.acked
    wait_until(
        lambda: watch.missing(acked) == 0 or not pipe.consumer.alive(),
        1200,
        "every acknowledged event in the output",
        0.5,
    )
    assert pipe.consumer.alive(), f"the consumer exited; see {pipe.consumer.log_path}"
    config = pipe.cluster.config()
    inputs = read_ids(config, pipe.topics["input"], len(acked), 180)
    outputs = read_ids(config, pipe.topics["output"], len(acked), 180)
    letters = read_ids_or_empty(config, pipe.topics["dlq"])
    verdict = Verdict(
        scenario=scenario,
        guarantee=pipe.guarantee,
        produced=load.sent,
        acked=len(acked),
        failed=len(load.failed),
        lost_in_input=len(acked - inputs.keys()),
        lost=len(acked - outputs.keys()),
        duplicates=sum(outputs.values()) - len(outputs),
        stall=watch.longest_gap(fault_start, stopped),
        baseline=watch.longest_gap(first, fault_start),
        notes={"in_flight_at_fault": in_flight, **notes, "dead_letters": letters},
    )
    record(verdict.line())
    code = pipe.consumer.stop()
    assert code == 0, f"the consumer did not stop cleanly ({code}); see {pipe.consumer.log_path}"
    assert verdict.produced >= pipe.events
    assert verdict.failed == 0, f"the load saw failed writes: {dict(list(load.failed.items())[:5])}"
    assert verdict.lost_in_input == 0, "an acknowledged write is missing from the input topic"
    assert verdict.lost == 0, "an acknowledged input has no output"
    assert letters == 0, "a broker fault must not dead-letter anything"
    if pipe.guarantee == "exactly-once":
        assert verdict.duplicates == 0, "a read_committed reader must see every result once"
    return verdict


def read_ids_or_empty(config: dict[str, Any], topic: str) -> int:
    return sum(read_ids(config, topic, 0, 60).values())


def busiest_broker(pipe: Pipeline) -> tuple[Any, int]:
    """The broker leading the most partitions of the input, repartition and output topics."""
    leaders = pipe.cluster.cluster.leaders(pipe.pipeline_topics())
    node_id, count = leaders.most_common(1)[0]
    return pipe.cluster.cluster.broker(node_id), count


def only_in_sync_on(pipe: Pipeline, node_id: int) -> int:
    """Partitions of the pipeline's topics whose only in-sync replica is ``node_id`` (they go offline with
    it: no unclean election; such a partition took no acks=all write since its ISR fell below 2)."""
    md = admin(pipe.cluster.config()).list_topics(timeout=10)
    return sum(
        1
        for name in pipe.all_topics()
        if name in md.topics
        for part in md.topics[name].partitions.values()
        if list(part.isrs) == [node_id]
    )


def kill_and_restart(pipe: Pipeline, victim: Any, led: int) -> dict[str, Any]:
    """kill -9 ``victim``; up to RESUME seconds for the output to go on without it (a partition whose only
    in-sync replica it was waits for it), then start it again, as Kubernetes would restart its pod."""
    cluster = pipe.cluster.cluster
    alone = only_in_sync_on(pipe, victim.node_id)
    killed_at = time.monotonic()
    assert cluster.kill(victim)
    flowing = pipe.watch.distinct
    try:
        wait_until(lambda: pipe.watch.distinct >= flowing + 2_000, RESUME, "output without the killed broker")
        without = "yes"
    except AssertionError:
        without = f"no (waited {RESUME:.0f}s)"
    resumed = pipe.watch.first_after(killed_at)
    pipe.cluster.start(victim)
    cluster.wait_registered([victim.node_id], START)
    return {
        "killed": victim.name,
        "leading": led,
        "only_in_sync_replica_of": alone,
        "output_went_on_without_it": without,
        "first_output_after_kill": f"{(resumed or killed_at) - killed_at:.1f}s",
    }


def assert_replicated(cluster: ClusterHandle, topics: list[str]) -> None:
    """Every topic has 3 replicas per partition and min.insync.replicas=2."""
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    client = admin(cluster.config())
    md = client.list_topics(timeout=10)
    for name in topics:
        assert name in md.topics, f"{name} was not created"
        assert {len(p.replicas) for p in md.topics[name].partitions.values()} == {3}, name
    futures = client.describe_configs([ConfigResource("topic", t) for t in topics])
    for resource, future in futures.items():
        assert future.result(timeout=30)["min.insync.replicas"].value == "2", resource.name


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_leader_of_the_busiest_partitions_killed_mid_stream(
    pipeline: Callable[[str], Pipeline], guarantee: str
) -> None:
    pipe = pipeline(guarantee)

    def fault() -> dict[str, Any]:
        return kill_and_restart(pipe, *busiest_broker(pipe))

    verdict = run(pipe, "leader-kill", fault)
    group = pipe.group
    assert_replicated(
        pipe.cluster,
        [
            *pipe.topics.values(),
            f"{group}-network-repartition",
            f"{group}-network-state",
            f"{group}-detector-state",
        ],
    )
    assert verdict.stall < STALL_LIMIT


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_rolling_restart_of_the_three_brokers_under_load(
    pipeline: Callable[[str], Pipeline], guarantee: str
) -> None:
    pipe = pipeline(guarantee)
    cluster = pipe.cluster.cluster

    def fault() -> dict[str, Any]:
        took: dict[str, Any] = {}
        for broker in cluster.brokers:
            started = time.monotonic()
            assert cluster.stop(broker)  # SIGTERM: controlled shutdown, its leaderships move first
            pipe.cluster.start(broker)
            cluster.wait_registered([broker.node_id], START)
            wait_until(lambda: cluster.under_replicated() == 0, START, f"{broker.name} in sync again", 1.0)
            took[broker.name] = f"{time.monotonic() - started:.0f}s"
        return took

    verdict = run(pipe, "rolling-restart", fault)
    assert verdict.stall < STALL_LIMIT


def probe_write(config: dict[str, Any], topic: str, timeout: float = 30.0) -> str:
    """One acks=all write without retries: the broker's answer (error name, or "acknowledged")."""
    result: list[str] = []
    producer = Producer(
        {
            **config,
            "acks": "all",
            "enable.idempotence": False,
            "retries": 0,
            "message.timeout.ms": int(timeout * 1000),
            "log_level": 0,
        }
    )

    def report(err: KafkaError | None, _msg: Any) -> None:
        result.append(err.name() if err is not None else "acknowledged")

    producer.produce(topic, b'{"probe":true}', b"probe", on_delivery=report)
    producer.flush(timeout + 5)
    return result[0] if result else "no answer"


# The two-brokers outage outlasts the group's max.poll.interval.ms (made short here, as the settings allow:
# 4 x DELIVERY_TIMEOUT, and SESSION_TIMEOUT_MS's default) twice over: the loop must keep reading while Kafka
# refuses its writes (a pending abort, a full queue), or the group drops it for not reading. Before the fix
# the loop stayed in ``Transactions.begin`` retrying the abort. (The group may still drop it for its
# session: a group coordinator among the killed brokers answers no heartbeat; that is the cluster's doing
# and the consumer rejoins when one returns.)
POLL_INTERVAL_MS = 45_000
OUTAGE_SETTINGS = {"delivery_timeout": 10, "max_poll_interval_ms": POLL_INTERVAL_MS}
REFUSED_FOR = 2.5 * POLL_INTERVAL_MS / 1000


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_two_brokers_down_refuses_writes_and_recovers_when_one_returns(
    pipeline: Callable[..., Pipeline], guarantee: str
) -> None:
    pipe = pipeline(guarantee, **OUTAGE_SETTINGS)
    cluster = pipe.cluster.cluster
    consumer = pipe.consumer

    def fault() -> dict[str, Any]:
        down = cluster.brokers[1:]
        for broker in down:
            assert cluster.kill(broker)
        killed_at = time.monotonic()
        refusing = wait_until(
            lambda: consumer.get("/ready")[0] == 503 and "refuses writes" in consumer.get("/ready")[1],
            120,
            "/ready 503: Kafka refuses writes",
            0.5,
        )
        assert consumer.metric("login_consumer_kafka_degraded") == 2
        assert consumer.metric("login_consumer_kafka_brokers") == 1
        answer = probe_write(pipe.cluster.config(), pipe.topics["input"])
        assert answer in ("NOT_ENOUGH_REPLICAS", "NOT_ENOUGH_REPLICAS_AFTER_APPEND"), answer
        assert pipe.load is not None
        window = time.monotonic()
        queued = pipe.load.sent
        # a fixed window of observation, longer than the group lets a member go without reading
        time.sleep(max(0.0, REFUSED_FOR - (window - killed_at)))
        acked_in_window = pipe.load.acked_between(window, time.monotonic())
        assert acked_in_window == 0, "a write was acknowledged below min.insync.replicas"
        assert consumer.alive(), "the consumer must stay up while the cluster refuses writes"
        assert consumer.get("/ready")[0] == 503, "/ready must say the cluster refuses writes all along"
        outage = time.monotonic() - killed_at
        back = time.monotonic()
        pipe.cluster.start(down[0])
        cluster.wait_registered([down[0].node_id], START)
        flowing = pipe.watch.distinct
        wait_until(lambda: pipe.watch.distinct >= flowing + 2_000, 600, "output after one broker returned")
        recovered = time.monotonic() - back
        wait_until(lambda: consumer.get("/ready")[0] == 200, 300, "/ready 200 again", 0.5)
        pipe.cluster.start(down[1])
        cluster.wait_registered([down[1].node_id], START)
        dropped = dropped_for_not_reading(pipe)
        assert not dropped, f"the loop went longer than max.poll.interval.ms without reading: {dropped}"
        return {
            "refused_after": f"{refusing:.1f}s",
            "probe": answer,
            "acked_while_refused": acked_in_window,
            "queued_at_refusal": queued,
            "outage": f"{outage:.1f}s",
            "recovered_after_return": f"{recovered:.1f}s",
        }

    run(pipe, "two-brokers-down", fault)


def dropped_for_not_reading(pipe: Pipeline) -> list[str]:
    """Lines of the consumer's log that say the group dropped it for not reading: librdkafka's "maximum
    poll interval ... exceeded" log line or error."""
    return [
        line[:300]
        for line in pipe.consumer.log_path.read_text(errors="replace").splitlines()
        if "maximum poll interval" in line.lower() or "MAX_POLL_EXCEEDED" in line
    ]


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_controller_quorum_leader_killed_the_pipeline_goes_on(
    pipeline: Callable[[str], Pipeline], guarantee: str
) -> None:
    pipe = pipeline(guarantee)
    cluster = pipe.cluster.cluster

    def fault() -> dict[str, Any]:
        leader = cluster.quorum_leader()
        assert leader is not None, "no controller reports a quorum leader"
        assert cluster.kill(leader)
        elected = wait_until(
            lambda: (new := cluster.quorum_leader()) is not None and new != leader, 120, "a new quorum leader"
        )
        new = cluster.quorum_leader()
        flowing = pipe.watch.distinct
        wait_until(lambda: pipe.watch.distinct >= flowing + 2_000, 600, "output after the controller kill")
        pipe.cluster.start(leader)
        return {
            "killed": leader.name,
            "new_leader": new.name if new else "?",
            "elected_after": f"{elected:.1f}s",
        }

    verdict = run(pipe, "controller-leader-kill", fault)
    assert verdict.stall < STALL_LIMIT
