"""The repartitioned topology on the real broker: a network's failures meet on the network stage whatever
the number of consumers, network state moves with its partition, and rescaling in exactly-once mode
neither loses nor duplicates an event nor changes a detection."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
import zlib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from login_consumer.app import ConsumerApp
from login_consumer.detectors.names import DETECTOR_NAMES
from login_consumer.metrics import ConsumerMetrics
from login_consumer.stages.network import read_progress
from tests.integration.conftest import Pipeline, wait_for
from tests.kafka_utils import drain, running

pytestmark = pytest.mark.integration

NOW = int(time.time())
PARTITIONS = 6
BIN = Path(sys.executable).parent


def event(
    user: str, ts: int, *, outcome: str = "failure", ip: str = "81.2.69.160", device: str = "d1"
) -> dict[str, Any]:
    return {
        "event_id": str(uuid.uuid4()),
        "user_id": user,
        "ip": ip,
        "timestamp": ts,
        "device_id": device,
        "device_type": "android",
        "app_version": "2.4.0",
        "locale": "GB",
        "outcome": outcome,
        "auth_method": "password",
    }


@pytest.mark.parametrize("consumers", [1, 3])
def test_a_networks_failures_on_every_partition_are_counted_together(
    pipeline: Callable[..., Pipeline], consumers: int
) -> None:
    topo = pipeline(f"topo-{consumers}", partitions=PARTITIONS, commit_interval_ms=200)
    with ExitStack() as stack:
        apps = [stack.enter_context(topo.consumer(f"c{n}")) for n in range(consumers)]
        topo.wait_split(apps)
        # one IP fails on 24 accounts within two minutes; the accounts live on all six input partitions
        ids = topo.one_by_one(
            [(n % PARTITIONS, event(f"victim{n}", NOW - 120 + 5 * n, ip="198.51.100.23")) for n in range(24)]
        )
        found = topo.detections()
    flagged = [("credential_stuffing" in found[i]) for i in ids]
    assert flagged == [False] * 9 + [True] * 15  # from the 10th account on, whoever read which partition


def test_a_rebalance_moves_network_state_with_its_partition(pipeline: Callable[..., Pipeline]) -> None:
    topo = pipeline("topo-move", partitions=PARTITIONS, commit_interval_ms=200)
    attacker = "203.0.113.77"
    with topo.consumer("first") as first:
        topo.send([(n % PARTITIONS, event(f"acc{n}", NOW - 300 + n, ip=attacker)) for n in range(6)])
        topo.detections()
        assert first.network is not None
        assert first.network.state_sizes()["network_failures"] == 1
        with topo.consumer("second") as second:
            topo.wait_split([first, second])
            ids = topo.one_by_one(
                [(n % PARTITIONS, event(f"acc{n}", NOW - 200 + n, ip=attacker)) for n in range(6, 12)]
            )
            found = topo.detections()
            owners = [
                app
                for app in (first, second)
                if app.network and app.network.state_sizes()["network_failures"]
            ]
            assert len(owners) == 1  # the network's partition (and its state) is on one consumer only
    # the 10th to 12th accounts are flagged: the accounts seen before the rebalance were restored
    assert [("credential_stuffing" in found[i]) for i in ids] == [False] * 3 + [True] * 3


def test_an_event_without_a_network_still_completes(pipeline: Callable[..., Pipeline]) -> None:
    """IPv6 with a zone index passes validation (a valid address) but has no /64 network to key by."""
    topo = pipeline("topo-nonet", partitions=PARTITIONS, commit_interval_ms=200)
    with topo.consumer("only"):
        ids = topo.send(
            [
                (0, event("zoned", NOW - 10, outcome="success", ip="fe80::1%eth0")),
                (1, event("plain", NOW - 9, outcome="success", ip="81.2.69.160")),
            ]
        )
        found = topo.detections()
    assert set(ids) <= set(found)


def test_an_ordering_that_stops_waiting_is_counted_by_stage_and_cause(
    pipeline: Callable[..., Pipeline],
) -> None:
    """With ALIGNMENT_MAX_WAIT_MS=0 the network stage's merge never waits for a source that is silent at
    that instant: each such release round is an out-of-order release, and the metric says so (the one
    the rescale test below relies on being reported)."""
    topo = pipeline("topo-ooo", partitions=PARTITIONS, commit_interval_ms=200, alignment_max_wait_ms=0)
    registry = CollectorRegistry()
    app = ConsumerApp(topo.settings, ConsumerMetrics.create(registry))
    with running(app.run, "only"):
        assert app.assigned.wait(30), "no partitions assigned"
        topo.one_by_one([(n % PARTITIONS, event(f"u{n}", NOW - 60 + n)) for n in range(12)])
        topo.detections()
    counted = {
        (stage, cause): registry.get_sample_value(
            "login_consumer_out_of_order_releases_total", {"stage": stage, "cause": cause}
        )
        for stage in ("user", "network")
        for cause in ("silent_source", "too_many_held")
    }
    assert (counted["network", "silent_source"] or 0) > 0, counted
    assert counted["network", "too_many_held"] == 0, counted
    assert counted["user", "too_many_held"] == 0, counted


def _claims(kafka: str, topic: str) -> dict[int, bool]:
    """Per source (input partition): whether its last committed progress record in the repartition topic's
    partition 0 says idle."""
    reader = Consumer(
        {
            "bootstrap.servers": kafka,
            "group.id": f"claims-{uuid.uuid4().hex[:8]}",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
        }
    )
    part = TopicPartition(topic, 0, OFFSET_BEGINNING)
    last: dict[int, bool] = {}
    try:
        _, end = reader.get_watermark_offsets(part, timeout=10)
        reader.assign([part])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for msg in reader.consume(500, 0.5):
                if msg.error() is None and (found := read_progress(msg.headers())) is not None:
                    last[found[0]] = found[3]
            if reader.position([part])[0].offset >= end:  # read what was there when asked
                break
    finally:
        reader.close()
    return last


def test_a_process_giving_up_its_input_partitions_withdraws_their_idle_claims(
    pipeline: Callable[..., Pipeline],
) -> None:
    """An idle claim says what its writer will write next; it must not outlive the writer's ownership.
    A process stopped (or rebalanced away) while its partitions were idle left its last claims standing
    in every repartition partition: the merges trusted them until the new owner's first record and
    released the other sources' events past the events produced meanwhile (docs/detection.md)."""
    topo = pipeline("topo-resign", partitions=2, commit_interval_ms=200, processing_guarantee="exactly-once")
    topic = topo.settings.repartition_topic()
    with topo.consumer("only"):
        topo.send([(n % 2, event(f"r{n}", NOW - 60 + n)) for n in range(4)])
        topo.detections()
        wait_for(lambda: _claims(topo.kafka, topic) == {0: True, 1: True}, 60, "both sources idle")
    assert _claims(topo.kafka, topic) == {0: False, 1: False}  # stopped: withdrawn


# --------------------------------------------------------------------------- rescaling, exactly-once


def _simulated(path: Path, events: int) -> list[dict[str, Any]]:
    """The producer's population with its attack mix (labels dropped), the same every run, re-timed to end a
    minute ago."""
    subprocess.run(
        [
            str(BIN / "login-producer"),
            "--count",
            str(events),
            "--out",
            str(path),
            "--users",
            "400",
            "--seed",
            "7",
            "--start-time",  # the same events every run (the population's day follows the start time)
            "1796194800",  # 07:00 UTC: a stuffing wave in the mix (about 2,000 of 12,000 events)
        ],
        check=True,
        capture_output=True,
        timeout=300,
        env={**os.environ, "LOG_FORMAT": "json"},
    )
    docs = [orjson.loads(line) for line in path.read_bytes().splitlines()]
    stamps = [int(d["timestamp"]) for d in docs]
    shift = NOW - 60 - max(stamps)
    for doc in docs:
        doc.pop("_label", None)
        doc["timestamp"] = int(doc["timestamp"]) + shift
    return docs


def _launch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    out = log.open("ab")
    return subprocess.Popen([str(BIN / "login-consumer"), "run"], env=env, stdout=out, stderr=out)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def test_rescaling_1_3_1_in_exactly_once_loses_nothing_duplicates_nothing_and_detects_alike(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str], tmp_path: Path
) -> None:
    source = topic_factory("user-login", partitions=PARTITIONS)
    output = topic_factory("processed-logins", partitions=PARTITIONS)
    dlq = topic_factory("dlq")
    group = group_factory("rescale")
    lines = _simulated(tmp_path / "events.jsonl", 12_000)

    env = {
        **os.environ,
        "LOG_FORMAT": "json",
        "BOOTSTRAP_SERVERS": kafka,
        "INPUT_TOPIC": source,
        "OUTPUT_TOPIC": output,
        "DLQ_TOPIC": dlq,
        "GROUP_ID": group,
        "PROCESSING_GUARANTEE": "exactly-once",
        "COMMIT_INTERVAL_MS": "200",
        "SESSION_TIMEOUT_MS": "6000",
        "METRICS_PORT": "0",
        "TIMESTAMP_MAX_AGE_SECONDS": str(30 * 86_400),
    }
    producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True, "linger.ms": 5})

    def partition_of(doc: dict[str, Any]) -> int:
        return zlib.crc32(doc["user_id"].encode()) % PARTITIONS

    def feed(docs: list[dict[str, Any]], pace: float) -> None:
        for n, doc in enumerate(docs):
            key = doc["user_id"].encode()
            producer.produce(source, orjson.dumps(doc), key, partition=partition_of(doc))
            if n % 500 == 499:
                producer.poll(0)
                time.sleep(pace)
        assert producer.flush(30) == 0

    log = tmp_path / "consumers.log"
    admin = AdminClient({"bootstrap.servers": kafka})

    def members() -> int:
        """The group's member count, -1 while its coordinator is not known yet (NOT_COORDINATOR and the
        like are retriable: a fresh broker moves or loads the group's coordinator)."""
        (described,) = admin.describe_consumer_groups([group]).values()
        try:
            return len(described.result(10).members)
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            return -1

    procs = [_launch({**env, "TRANSACTIONAL_ID": f"{group}-a"}, log)]
    try:
        third = len(lines) // 3
        feed(lines[:third], 0.15)
        extra = [_launch({**env, "TRANSACTIONAL_ID": f"{group}-{name}"}, log) for name in ("b", "c")]
        procs += extra
        # the second third goes to three processes: they must have joined (a loaded machine starts a
        # process slower than this test feeds a third)
        wait_for(lambda: members() == 3, 120, "three consumers in the group")
        feed(lines[third : 2 * third], 0.15)
        for proc in extra:  # back to one process while events keep coming
            _stop(proc)
        wait_for(lambda: members() == 1, 60, "one consumer left in the group")
        feed(lines[2 * third :], 0.15)
        out = drain(kafka, output, expected=len(lines), timeout=240, isolation="read_committed")
    finally:
        for proc in procs:
            if proc.poll() is None:
                _stop(proc)
    docs = [orjson.loads(m.value() or b"{}") for m in out]
    seen = Counter(d["event_id"] for d in docs)
    tail = log.read_text(errors="replace")[-3000:]
    assert set(seen) == {d["event_id"] for d in lines}, f"lost {len(lines) - len(seen)}; log tail:\n{tail}"
    assert max(seen.values()) == 1, "a read_committed reader saw an event twice"

    # the same input, read again by one process of another group: the reference run
    reference = topic_factory("processed-logins-ref", partitions=PARTITIONS)
    env_ref = {
        **env,
        "GROUP_ID": group + "-ref",
        "OUTPUT_TOPIC": reference,
        "TRANSACTIONAL_ID": group + "-ref",
    }
    one = _launch(env_ref, log)
    try:
        ref = drain(kafka, reference, expected=len(lines), timeout=240, isolation="read_committed")
    finally:
        _stop(one)
    by_id = {d["event_id"]: d for d in docs}
    expected = {
        d["event_id"]: {x["detector"] for x in d["detections"]}
        for d in (orjson.loads(m.value() or b"{}") for m in ref)
    }
    got = {d["event_id"]: {x["detector"] for x in d["detections"]} for d in docs}
    differ = [e for e in expected if expected[e] != got[e]]
    assert sum(1 for v in got.values() if v) > 50, "the traffic should hold detections"
    detail = [(expected[e], got[e], by_id[e]["detections"]) for e in differ[:5]]
    # Every detector must agree exactly, unless the consumer reported an out-of-order release: its user
    # stage's alignment stopped waiting (alignment.out_of_order: the user stage's order feeds its
    # detectors), or the network stage's merge released out of event-time order (merge.out_of_order:
    # silent_source, too_many_held, or late_arrival — an event reached the merge behind one already
    # released, its input partition having been taken as idle while its producer's batch was still on the
    # way: docs/detection.md), which changes credential_stuffing and nothing else.
    logged = log.read_text(errors="replace")
    merge_disorder = [ln for ln in logged.splitlines() if '"merge.out_of_order"' in ln]
    allowed: set[str] = set()
    if '"alignment.out_of_order"' in logged:
        allowed |= set(DETECTOR_NAMES) - {"credential_stuffing"}
    if merge_disorder:
        allowed.add("credential_stuffing")
    changed = {d for e in differ for d in expected[e] ^ got[e]}
    stuffing = sum(1 for v in expected.values() if "credential_stuffing" in v)
    print(
        f"\n{len(differ)} event(s) differ ({sorted(changed)}) of {stuffing} stuffing detections; "
        f"out-of-order reported: {merge_disorder[:3] or 'none by the merge'}"
        f"{', alignment' if 'alignment.out_of_order' in logged else ''}"
    )
    assert changed <= allowed, f"{len(differ)} event(s) differ, e.g. {detail}"
