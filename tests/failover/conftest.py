"""Fixtures of the fault tests (``make test-failover``): a real three-broker cluster and the pipeline on it.

The cluster is scripts/local_kafka.py's (``KAFKA_BROKERS=3``: three brokers, three KRaft controllers) on
FAILOVER_KAFKA_PORT (default KAFKA_PORT + 100, so it runs beside the single broker of ``make test``),
started for the session unless it runs, and stopped at the end if this session started it. After every
test every node runs again and no partition is under-replicated, so a fault never leaks into the next
test. ``pipeline`` gives a test its own topics (replicated as the project creates them), the consumer
service as a process, a paced load and a live reader of the output (harness.py).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from login_common.kafka import ensure_topics
from tests.failover.harness import ROOT, Consumer, Load, OutputWatch, wait_until
from tests.observability.scripts import load as load_script

PARTITIONS = 6
EVENTS = int(os.environ.get("FAILOVER_EVENTS", "100000"))  # events per fault test, at least
BURST = int(os.environ.get("FAILOVER_BURST", "20000"))  # sent at once: the backlog the fault lands in
RATE = int(os.environ.get("FAILOVER_RATE", "1000"))  # events/s after the burst, through the fault
FIGURES: list[str] = []  # one line per fault test, printed at the end of the session
FIGURES_FILE = ROOT / ".cache" / "failover-figures.txt"  # and kept, one line per test as it ends


def record(line: str) -> None:
    FIGURES.append(line)
    print(line)
    FIGURES_FILE.parent.mkdir(parents=True, exist_ok=True)
    with FIGURES_FILE.open("a", encoding="utf-8") as out:
        out.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} {line}\n")


def failover_host() -> str:
    """FAILOVER_KAFKA_HOST (default 127.0.0.1). With ports in Linux's ephemeral range (32768-60999) set
    another loopback address, e.g. 127.0.0.2: a client reconnecting to a killed node on its own address can
    connect to itself and hold the node's port (scripts/kafka_cluster.py)."""
    return os.environ.get("FAILOVER_KAFKA_HOST", "") or "127.0.0.1"


def failover_port() -> int:
    named = os.environ.get("FAILOVER_KAFKA_PORT", "")
    return int(named) if named else int(os.environ.get("KAFKA_PORT", "9092")) + 100


def start_cluster(port: int, security: str = "plaintext", host: str = "127.0.0.1") -> bool:
    """``local_kafka.py up`` with KAFKA_BROKERS=3 on ``host:port``; True when it started nodes."""
    env = {
        **os.environ,
        "KAFKA_HOST": host,
        "KAFKA_PORT": str(port),
        "KAFKA_BROKERS": "3",
        "KAFKA_SECURITY": security,
        "BOOTSTRAP_SERVERS": "",
    }
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_kafka.py"), "up", "--timeout", "240"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=600,
    )
    if done.returncode != 0:
        pytest.fail(f"the three-broker cluster did not start: {done.stderr.strip() or done.stdout.strip()}")
    return "already running" not in done.stdout


def stop_cluster(port: int, security: str = "plaintext") -> None:
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_BROKERS": "3", "KAFKA_SECURITY": security}
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "local_kafka.py"), "down"],
        env=env,
        check=False,
        timeout=300,
        capture_output=True,
    )


@dataclass
class ClusterHandle:
    """The running cluster: its nodes (kill, stop, start) and how to reach it."""

    cluster: Any  # kafka_cluster.Cluster
    lk: ModuleType  # scripts/local_kafka.py

    @property
    def bootstrap(self) -> str:
        return str(self.cluster.bootstrap)

    def config(self, user: str = "admin") -> dict[str, Any]:
        return dict(self.cluster.client_config(user))

    def start(self, node: Any, timeout: float = 600.0) -> None:
        """Start ``node`` and wait until it runs (a broker: registered); a start that dies at once (its
        port taken by a passing connection) is tried again."""
        runtime = self.lk.runtime()
        deadline = time.monotonic() + timeout
        while True:
            self.cluster.start(node, runtime)
            left = deadline - time.monotonic()
            wait_until(lambda: self.cluster.pid(node) is None or self._up(node), left, f"{node.name} up")
            if self.cluster.pid(node) is not None:
                return
            assert time.monotonic() < deadline, f"{node.name} keeps exiting; see its node.log"

    def _up(self, node: Any) -> bool:
        """The node's own listener answers (not a stale registration of the process it replaces)."""
        if not _listening(node.host, node.port):
            return False
        if node.role == "broker":
            return node.node_id in self.cluster.registered()
        return bool(self.cluster.metric(node, "kafka_server_raft_metrics_current_leader") is not None)

    def restore(self, timeout: float = 600.0) -> None:
        """Every node running, every broker registered, no partition under-replicated."""
        for node in [n for n in self.cluster.nodes if self.cluster.pid(n) is None]:
            self.start(node, timeout)
        self.cluster.wait_registered([b.node_id for b in self.cluster.brokers], timeout)
        wait_until(lambda: self.cluster.under_replicated() == 0, timeout, "every partition in sync", 1.0)


def _listening(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def cluster() -> Iterator[ClusterHandle]:
    port = failover_port()
    os.environ.setdefault("KAFKA_BROKERS", "3")
    lk = load_script("local_kafka")
    kc = load_script("kafka_cluster")
    host = failover_host()
    started = start_cluster(port, host=host)
    handle = ClusterHandle(kc.Cluster(port, 3, lk.CACHE, secure=False, host=host), lk)
    try:
        yield handle
    finally:
        if started and not os.environ.get("FAILOVER_KEEP_CLUSTER"):
            stop_cluster(port)


@pytest.fixture
def restored(cluster: ClusterHandle) -> Iterator[ClusterHandle]:
    """The cluster, whole before the test and made whole again after it."""
    cluster.restore()
    yield cluster
    cluster.restore()


@dataclass
class Pipeline:
    cluster: ClusterHandle
    guarantee: str
    topics: dict[str, str]
    group: str
    consumer: Consumer
    watch: OutputWatch
    load: Load | None = None
    events: int = EVENTS
    producer: dict[str, Any] | None = None  # the load's client settings (default: the cluster's admin)

    def start_load(self) -> Load:
        config = self.producer or self.cluster.config()
        burst = min(BURST, self.events)
        self.load = Load(config, self.topics["input"], burst, RATE, self.events).start()
        return self.load

    def all_topics(self) -> list[str]:
        internal = ("network-repartition", "network-state", "detector-state")
        return [*self.topics.values(), *(f"{self.group}-{name}" for name in internal)]

    def pipeline_topics(self) -> list[str]:
        return [self.topics["input"], self.topics["output"], f"{self.group}-network-repartition"]


@pytest.fixture
def pipeline(
    restored: ClusterHandle, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[[str], Pipeline]]:
    made: list[Pipeline] = []

    def make(guarantee: str, **settings: Any) -> Pipeline:
        tag = uuid.uuid4().hex[:8]
        topics = {"input": f"fo-in-{tag}", "output": f"fo-out-{tag}", "dlq": f"fo-dlq-{tag}"}
        config = restored.config()
        ensure_topics(config, {topics["input"]: PARTITIONS, topics["output"]: PARTITIONS, topics["dlq"]: 1})
        group = f"fo-{tag}"
        env = {
            "BOOTSTRAP_SERVERS": restored.bootstrap,
            "INPUT_TOPIC": topics["input"],
            "OUTPUT_TOPIC": topics["output"],
            "DLQ_TOPIC": topics["dlq"],
            "GROUP_ID": group,
            "PROCESSING_GUARANTEE": guarantee,
            "TRANSACTIONAL_ID": f"fo-{tag}",
            **{k.upper(): str(v) for k, v in settings.items()},
        }
        watch = OutputWatch(config, topics["output"]).start()
        consumer = Consumer(env, tmp_path / f"consumer-{tag}.log")
        pipe = Pipeline(restored, guarantee, topics, group, consumer, watch)
        made.append(pipe)
        wait_until(lambda: consumer.get("/ready")[0] == 200 or not consumer.alive(), 120, "consumer /ready")
        assert consumer.alive(), f"the consumer exited; see {consumer.log_path}"
        return pipe

    yield make
    for pipe in made:
        if pipe.load is not None:
            pipe.load.stop()
        pipe.watch.stop()
        if pipe.consumer.alive():
            pipe.consumer.stop()
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            print(pipe.consumer.log_path.read_text()[-5000:])
        drop_topics(restored, pipe.all_topics())  # a broker restarting later recovers fewer logs


def drop_topics(cluster: ClusterHandle, topics: list[str]) -> None:
    from login_common.kafka import admin

    futures = admin(cluster.config()).delete_topics(topics, operation_timeout=60)
    for future in futures.values():
        try:
            future.result(timeout=90)
        except Exception as exc:  # noqa: BLE001 - missing (never created) or the cluster busy: not the test's verdict
            print(f"topic deletion: {exc}")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if FIGURES:
        terminalreporter.section("failover figures (lost, duplicates, stall)")
        for line in FIGURES:
            terminalreporter.write_line(line)
