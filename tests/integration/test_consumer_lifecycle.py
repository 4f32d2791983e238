"""The ``login-consumer`` process on the real broker: kill -9 and restart, exactly-once, SIGTERM/SIGINT.

Each test runs the console entry point as a subprocess (``python -m login_consumer``) and watches it
through its metrics port.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from login_common.contract import HEADER_DLQ_SOURCE_OFFSET, HEADER_DLQ_SOURCE_PARTITION
from login_consumer.stages.user import ROUTE_HEADER
from tests.integration.conftest import wait_for
from tests.kafka_utils import drain

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _events(count: int, invalid_every: int = 0) -> tuple[list[bytes], set[str], int]:
    """(values, event ids of the valid ones, number of invalid ones)."""
    now = int(time.time())
    values: list[bytes] = []
    ids: set[str] = set()
    invalid = 0
    for n in range(count):
        if invalid_every and n % invalid_every == 0:
            values.append(b"not json %d" % n)
            invalid += 1
            continue
        event_id = str(uuid.uuid4())
        ids.add(event_id)
        values.append(
            orjson.dumps(
                {
                    "event_id": event_id,
                    "user_id": f"user-{n % 500}",
                    "ip": f"81.2.{n % 250}.{n % 200 + 1}",
                    "timestamp": now - n % 100,
                    "locale": "RI",
                    "device_type": "android",
                    "app_version": "2.3.0",
                    "device_id": f"d-{n % 500}",
                }
            )
        )
    return values, ids, invalid


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4"})
    for n, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value=value, key=f"user-{n % 500}".encode())
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


class ConsumerProcess:
    def __init__(self, env: dict[str, str]) -> None:
        self.port = int(env["METRICS_PORT"])
        self.log = open(env["_LOG"], "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "login_consumer"],
            env={k: v for k, v in env.items() if not k.startswith("_")},
            stdout=self.log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=2) as resp:
                return resp.status, resp.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str) -> float:
        _, text = self.get("/metrics")
        for line in text.splitlines():
            if line.startswith(name + " ") or line.startswith(name + "{"):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def total(self, name: str) -> float:
        """The sum of every series of ``name`` (e.g. lag over all partitions)."""
        _, text = self.get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith(name + " ") or line.startswith(name + "{")
        )

    def wait_for(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        """``wait_for`` (tests/integration/conftest.py), failing at once if the process exits."""

        def done() -> bool:
            if check():
                return True
            if self.proc.poll() is not None:
                pytest.fail(f"login-consumer exited ({self.proc.returncode}) while waiting for {what}")
            return False

        wait_for(done, timeout, what, interval=0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        started = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            code = -999
        self.log.close()
        return code, time.monotonic() - started


@pytest.fixture
def launch(kafka: str, tmp_path: Path) -> Iterator[Callable[..., ConsumerProcess]]:
    started: list[ConsumerProcess] = []

    def make(**settings: Any) -> ConsumerProcess:
        env = {
            **os.environ,
            "BOOTSTRAP_SERVERS": kafka,
            "METRICS_PORT": str(_free_port()),
            "LOG_FORMAT": "json",
            "SESSION_TIMEOUT_MS": "6000",
            "_LOG": str(tmp_path / "consumer.log"),
            **{k.upper(): str(v) for k, v in settings.items()},
        }
        proc = ConsumerProcess(env)
        started.append(proc)
        return proc

    yield make
    for proc in started:
        if proc.proc.poll() is None:
            proc.proc.kill()
            proc.proc.wait(5)


@contextmanager
def _reader(bootstrap: str) -> Iterator[Consumer]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"check-{uuid.uuid4().hex[:8]}"})
    try:
        yield consumer
    finally:
        consumer.close()


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    checker = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = checker.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return {tp.partition: tp.offset for tp in tps}
    finally:
        checker.close()


def _end_offsets(bootstrap: str, topic: str, partitions: int) -> dict[int, int]:
    with _reader(bootstrap) as reader:
        return {
            p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(partitions)
        }


def _read_range(bootstrap: str, topic: str, ranges: dict[int, tuple[int, int]]) -> list[Any]:
    """The messages of ``topic`` at offsets [start, end) of each partition (read_uncommitted)."""
    wanted = {p: (max(0, a), b) for p, (a, b) in ranges.items() if b > max(0, a)}
    out: list[Any] = []
    if not wanted:
        return out
    with _reader(bootstrap) as reader:
        reader.assign([TopicPartition(topic, p, a) for p, (a, _) in wanted.items()])
        left = dict(wanted)
        deadline = time.monotonic() + 60
        while left and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.5):
                if msg.error() is not None or msg.partition() not in left:
                    continue
                if msg.offset() < left[msg.partition()][1]:
                    out.append(msg)
                if msg.offset() + 1 >= left[msg.partition()][1]:
                    left.pop(msg.partition())
        assert not left, f"could not read {topic} {left}"
    return out


@dataclass
class AtTheKill:
    """What the killed process left: committed offsets of both stages and what lay past them."""

    first_run_outputs: int  # outputs the killed process wrote (all of them: it cannot write any more)
    uncommitted_repartitioned: int  # repartition records past the committed offsets: read again
    input_committed: dict[int, int]  # the user stage's committed offsets: what follows is read again


def _at_the_kill(bootstrap: str, group: str, source: str, output: str, partitions: int) -> AtTheKill:
    repartition = f"{group}-network-repartition"  # ConsumerSettings.repartition_topic()
    with _reader(bootstrap) as reader:
        hops = len(reader.list_topics(repartition, timeout=10).topics[repartition].partitions)
    settled: tuple[Any, ...] = ()
    for _ in range(20):  # requests the process sent just before it died may still land: wait until still
        state = (
            _end_offsets(bootstrap, output, partitions),
            _end_offsets(bootstrap, repartition, hops),
            _committed(bootstrap, group, source, partitions),
            _committed(bootstrap, group, repartition, hops),
        )
        if state == settled:
            break
        settled = state
        time.sleep(1.0)
    out_end, rep_end, in_commit, rep_commit = settled
    records = _read_range(bootstrap, repartition, {p: (rep_commit[p], rep_end[p]) for p in range(hops)})
    routed = sum(1 for m in records if any(k == ROUTE_HEADER for k, _ in m.headers() or []))
    return AtTheKill(sum(out_end.values()), routed, in_commit)


def _valid_past(bootstrap: str, source: str, committed: dict[int, int]) -> int:
    """Valid input events at or past the committed offsets (every one of them is processed again)."""
    ends = _end_offsets(bootstrap, source, len(committed))
    inputs = _read_range(bootstrap, source, {p: (committed[p], ends[p]) for p in committed})
    return sum(1 for m in inputs if not (m.value() or b"").startswith(b"not json"))


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_kill_9_mid_stream_then_restart_loses_nothing(
    kafka: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[str], str],
    launch: Callable[..., ConsumerProcess],
    guarantee: str,
) -> None:
    """kill -9, restart: nothing lost. Exactly-once: every result once. At-least-once: the duplicates are
    exactly what was uncommitted at the kill, counted from the broker, so the test holds whatever the
    timing of the kill.

    Why at-least-once can write an event three times: the two stages commit independently. After the
    restart the user stage reads again every input past its committed offset and writes a second
    repartition record for each; the network stage reads again every repartition record past its committed
    offset, the first run's included. An event past both commit points whose first record was completed
    before the kill is written three times: by the first run, for its first record read again, and for its
    second record. So the outputs are exactly: what the first run wrote + the repartition records past the
    network stage's commit + the valid inputs past the user stage's commit, and the duplicates (that total
    minus the events) are at most the uncommitted repartition records plus the inputs the first run had
    read past its commit.
    """
    source = topic_factory("user-login", partitions=3)
    output = topic_factory("processed-logins", partitions=3)
    dlq = topic_factory("dlq")
    values, ids, invalid = _events(30_000, invalid_every=97)
    half = len(values) // 2
    _produce(kafka, source, values[:half])  # the rest after the kill: the restart always has work
    group = group_factory("crash")
    settings = {
        "input_topic": source,
        "output_topic": output,
        "dlq_topic": dlq,
        "group_id": group,
        "batch_size": 500,
        "processing_guarantee": guarantee,
        "transactional_id": f"crash-{uuid.uuid4().hex[:8]}",
    }

    first = launch(**settings)
    first.wait_for(lambda: first.metric("login_consumer_events_processed_total") >= 3_000, 60, "progress")
    first.proc.kill()  # SIGKILL: no drain, no commit, maybe an open transaction
    first.proc.wait(5)
    assert first.metric("login_consumer_events_processed_total") == 0  # the port is gone: it is dead
    left = _at_the_kill(kafka, group, source, output, 3) if guarantee == "at-least-once" else None
    uncommitted_inputs = _valid_past(kafka, source, left.input_committed) if left is not None else 0
    _produce(kafka, source, values[half:])

    second = launch(**settings)
    isolation = "read_committed" if guarantee == "exactly-once" else "read_uncommitted"
    expected = len(ids)
    if left is not None:  # the valid inputs past the commit: read again, plus the second half
        again = _valid_past(kafka, source, left.input_committed)
        expected = left.first_run_outputs + left.uncommitted_repartitioned + again
    outputs = drain(kafka, output, expected=expected, timeout=180, isolation=isolation)
    letters = drain(kafka, dlq, expected=invalid, timeout=30, isolation=isolation)
    resumed = second.metric("login_consumer_events_consumed_total")
    code, _ = second.stop()
    assert resumed > 0
    assert code == 0

    got = Counter(orjson.loads(m.value())["event_id"] for m in outputs)
    assert set(got) == ids, f"lost {len(ids - set(got))} event(s)"
    duplicates = sum(got.values()) - len(got)
    dead = Counter(
        (
            int(dict(m.headers())[HEADER_DLQ_SOURCE_PARTITION]),
            int(dict(m.headers())[HEADER_DLQ_SOURCE_OFFSET]),
        )
        for m in letters
    )
    assert len(dead) == invalid
    print(f"{guarantee}: {len(ids)} events, {duplicates} duplicate output(s) after kill -9 ({left})")
    if left is None:
        assert duplicates == 0, "a read_committed reader must see every result once"
        assert set(dead.values()) == {1}
        assert len(outputs) == len(ids)
        return
    assert len(outputs) == expected, f"{len(outputs)} outputs, {expected} from what was uncommitted"
    assert max(got.values()) <= 3
    # so the duplicates are at most what was uncommitted at the kill: the repartition records past the
    # network stage's commit, and the inputs there were past the user stage's commit
    assert duplicates <= left.uncommitted_repartitioned + uncommitted_inputs


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_drains_commits_and_exits_0_within_10_s(
    kafka: str,
    topic_factory: Callable[..., str],
    group_factory: Callable[[str], str],
    launch: Callable[..., ConsumerProcess],
    sig: int,
) -> None:
    source = topic_factory("user-login", partitions=3)
    output = topic_factory("processed-logins", partitions=3)
    values, ids, _ = _events(20_000)
    _produce(kafka, source, values)
    group = group_factory("signal")
    dlq = topic_factory("dlq")
    proc = launch(input_topic=source, output_topic=output, dlq_topic=dlq, group_id=group)
    proc.wait_for(lambda: proc.get("/ready")[0] == 200, 30, "/ready")
    assert proc.get("/healthz")[0] == 200
    assert 'guarantee="at-least-once"' in proc.get("/metrics")[1]
    proc.wait_for(lambda: proc.metric("login_consumer_events_processed_total") >= 1_000, 60, "progress")
    code, took = proc.stop(sig)  # mid-stream
    assert code == 0
    assert took < 10.0

    # whatever was committed has its result: commit only after the records it produced are acknowledged.
    # An input's result is its output, or its record on the repartition topic that the network stage had
    # not read yet: a second process (same group) completes those without reading the input again.
    committed = _committed(kafka, group, source, 3)
    assert sum(max(0, o) for o in committed.values()) > 0
    idle = topic_factory("idle", partitions=3)  # nothing new to read: only the repartition leftovers
    second = launch(input_topic=idle, output_topic=output, dlq_topic=dlq, group_id=group)
    second.wait_for(lambda: second.get("/ready")[0] == 200, 30, "/ready")
    second.wait_for(lambda: second.total("login_consumer_assigned_partitions") == 6, 30, "both topics")
    second.wait_for(lambda: second.total("login_consumer_lag_messages") == 0, 30, "the leftovers")
    outputs = drain(kafka, output, timeout=30, idle=2)
    leftovers = second.metric('login_consumer_stage_events_total{stage="network"}')
    second.stop()
    print(f"{len(outputs)} outputs, {leftovers} completed after the restart")
    out_ids = {orjson.loads(m.value())["event_id"] for m in outputs}
    with _reader(kafka) as reader:
        reader.assign([TopicPartition(source, p, 0) for p in range(3)])
        needed: set[str] = set()
        deadline = time.monotonic() + 30
        remaining = {p: o for p, o in committed.items() if o > 0}
        while remaining and time.monotonic() < deadline:
            for msg in reader.consume(1000, 0.5):
                if msg.error() is None and msg.offset() < committed.get(msg.partition(), 0):
                    needed.add(orjson.loads(msg.value())["event_id"])
                    if msg.offset() + 1 >= committed[msg.partition()]:
                        remaining.pop(msg.partition(), None)
    assert needed <= out_ids
    assert len(needed) == sum(max(0, o) for o in committed.values())
    assert needed <= ids
