"""The local multi-broker Kafka (``KAFKA_BROKERS=3``): brokers and three KRaft controllers, each its own
process, from the same jars as the single broker. local_kafka.py drives it (``up``, ``down``,
``status``, ``node``); the fault tests (tests/failover) use ``Cluster`` directly to kill and start nodes.

Separate controllers, not combined nodes. Three processes with ``process.roles=controller`` hold the KRaft
quorum; the brokers have ``process.roles=broker``. Why, although it costs three small JVMs more:
  * a broker fault is only a broker fault: killing the busiest broker never also takes a quorum member,
    and the controller-leader kill is a fault of its own (tests/failover);
  * with two brokers down the quorum still works, so it fences them, shrinks the ISRs and
    ``min.insync.replicas`` refuses acks=all writes (NOT_ENOUGH_REPLICAS): the behaviour the project
    relies on. With combined nodes two nodes down is a lost quorum and nothing changes at all;
  * it is the layout Strimzi recommends for production (a controller node pool and a broker pool).
The controllers are static voters (``controller.quorum.voters``), formatted once with one cluster id.

Ports, on KAFKA_HOST (default 127.0.0.1), for node slot i = 1, 2, 3 ... and base = KAFKA_PORT + 20 * (i - 1)
(KAFKA_PORT + 10 stays free for the local control plane):
  base      broker i's client and inter-broker listener (PLAINTEXT, or SASL_SSL with KAFKA_SECURITY=sasl_ssl)
  base + 1  controller i's listener (CONTROLLER; mutual TLS with KAFKA_SECURITY=sasl_ssl)
  base + 4  broker i's Prometheus metrics (the Strimzi Metrics Reporter, as the single broker's)
  base + 5  controller i's Prometheus metrics
Ports from 32768 on lie in Linux's ephemeral range: a client reconnecting to a node that is down can
connect to itself (source port = the node's port, on the same address) and hold the port; on another
loopback address (KAFKA_HOST=127.0.0.2: clients connect from 127.0.0.1) that cannot happen.
Folders: ``<cache>/cluster-<KAFKA_PORT>[-sasl_ssl]/``: ``cluster.id``, the shared ``tls/`` and ``secrets/``
of KAFKA_SECURITY=sasl_ssl (one CA, one broker certificate, the SCRAM users), and one folder per node
(``broker-1``, ``controller-1`` ...) with its server.properties, data/, node.log and node.pid.

Replication: factor ``min(3, brokers)`` and ``min.insync.replicas`` one less (at least 1) for the
brokers' defaults, the consumer offsets and the transaction state: 3 and 2 with three brokers, so one
broker may be lost without losing an acknowledged write or refusing one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from login_devtools import kafka_security

NODE_PORT_STRIDE: Final = 20
CONTROLLERS: Final = 3
CONTROLLER_ID_BASE: Final = 100  # controller i has node.id 100 + i; broker i has node.id i
MAX_BROKERS: Final = 9
CONTROLLER_HEAP: Final = ("-Xms64m", "-Xmx256m")


class ClusterError(Exception):
    pass


def replication(brokers: int) -> tuple[int, int]:
    """(replication factor, min.insync.replicas) for a cluster of ``brokers`` brokers."""
    factor = min(3, max(1, brokers))
    return factor, max(1, factor - 1)


@dataclass(frozen=True)
class Node:
    role: str  # "broker" or "controller"
    index: int  # its slot, 1-based
    host: str
    node_id: int
    port: int  # its listener
    metrics_port: int
    folder: Path

    @property
    def name(self) -> str:
        return f"{self.role}-{self.index}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class Runtime:
    """How to run a node: what local_kafka.py resolved (java, the jars, the metrics reporter)."""

    java: str
    classpath: str
    log4j: str  # log4j2.properties
    reporter: Callable[[int], list[str]] | None = None  # server.properties lines serving metrics on a port
    broker_heap: tuple[str, ...] = ("-Xms256m", "-Xmx1g")


class Cluster:
    def __init__(
        self, base_port: int, brokers: int, cache: Path, *, secure: bool, host: str = "127.0.0.1"
    ) -> None:
        if not 2 <= brokers <= MAX_BROKERS:
            raise ClusterError(f"KAFKA_BROKERS={brokers}: a cluster has 2 to {MAX_BROKERS} brokers")
        top = base_port + NODE_PORT_STRIDE * (max(brokers, CONTROLLERS) - 1) + 5
        if top > 65535:
            raise ClusterError(f"KAFKA_PORT={base_port}: the cluster's ports would reach {top} (above 65535)")
        self.base_port = base_port
        self.count = brokers
        self.secure = secure
        self.host = host  # every node's listener (KAFKA_HOST)
        self.root = cache / (f"cluster-{base_port}-sasl_ssl" if secure else f"cluster-{base_port}")
        self.brokers = [self._node("broker", i) for i in range(1, brokers + 1)]
        self.controllers = [self._node("controller", i) for i in range(1, CONTROLLERS + 1)]

    def _node(self, role: str, index: int) -> Node:
        base = self.base_port + NODE_PORT_STRIDE * (index - 1)
        broker = role == "broker"
        return Node(
            role=role,
            index=index,
            host=self.host,
            node_id=index if broker else CONTROLLER_ID_BASE + index,
            port=base if broker else base + 1,
            metrics_port=base + 4 if broker else base + 5,
            folder=self.root / f"{role}-{index}",
        )

    # ------------------------------------------------------------------ names and addresses

    @property
    def nodes(self) -> list[Node]:
        return [*self.controllers, *self.brokers]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ClusterError(f"no node {name!r}: the nodes are {', '.join(n.name for n in self.nodes)}")

    def broker(self, node_id: int) -> Node:
        return self.node(f"broker-{node_id}")

    @property
    def bootstrap(self) -> str:
        return ",".join(b.address for b in self.brokers)

    @property
    def voters(self) -> str:
        return ",".join(f"{c.node_id}@{c.address}" for c in self.controllers)

    def replication(self) -> tuple[int, int]:
        return replication(self.count)

    def secure_broker(self, node: Node | None = None) -> kafka_security.SecureBroker | None:
        """The SASL_SSL side (shared CA and users in the cluster folder) for ``node``'s slot, or None."""
        if not self.secure:
            return None
        slot = self.base_port + NODE_PORT_STRIDE * ((node.index if node else 1) - 1)
        return kafka_security.SecureBroker(self.root, slot)

    def admin(self) -> Any:
        """An admin client of the cluster (quiet: a broker that is down is expected here)."""
        from confluent_kafka.admin import AdminClient

        return AdminClient({**self.client_config(), "log_level": 0})

    def client_config(self, user: str = "admin") -> dict[str, Any]:
        """librdkafka settings for the whole cluster (every broker bootstraps; security when enabled)."""
        secure = self.secure_broker()
        if secure is None or not secure.password_file(user).exists():
            return {"bootstrap.servers": self.bootstrap}
        return {**secure.client_config(user), "bootstrap.servers": self.bootstrap}

    # ------------------------------------------------------------------ configuration

    def properties(self, node: Node, reporter: Callable[[int], list[str]] | None = None) -> list[str]:
        """server.properties of ``node``: the single broker's settings, split by role, and replication."""
        slot = self.base_port + NODE_PORT_STRIDE * (node.index - 1)
        factor, min_isr = self.replication()
        lines = [
            f"process.roles={node.role}",
            f"node.id={node.node_id}",
            f"controller.quorum.voters={self.voters}",
            "controller.listener.names=CONTROLLER",
            f"listeners=PLAINTEXT://{self.host}:{slot},CONTROLLER://{self.host}:{slot + 1}",
            f"advertised.listeners=PLAINTEXT://{self.host}:{slot},CONTROLLER://{self.host}:{slot + 1}",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={node.folder / 'data'}",
            # On controllers too: in KRaft the controller applies num.partitions and the default replication
            # factor to CreateTopics, and with eligible leader replicas (KIP-966, on in Kafka 4) it writes its
            # own min.insync.replicas into the metadata as the cluster-wide default, above the brokers' files.
            "num.partitions=6",
            f"default.replication.factor={factor}",
            f"min.insync.replicas={min_isr}",
            "unclean.leader.election.enable=false",
        ]
        if node.role == "broker":
            lines += [
                f"offsets.topic.replication.factor={factor}",
                "offsets.topic.num.partitions=10",
                f"transaction.state.log.replication.factor={factor}",
                f"transaction.state.log.min.isr={min_isr}",
                "transaction.state.log.num.partitions=4",
                f"share.coordinator.state.topic.replication.factor={factor}",
                f"share.coordinator.state.topic.min.isr={min_isr}",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=24",
            ]
        secure = self.secure_broker(node)
        if secure is not None:
            lines += secure.properties()  # written after the plaintext lines: these win
        if reporter is not None:
            lines += reporter(node.metrics_port)
        return for_role(lines, node.role)

    # ------------------------------------------------------------------ processes

    def pid_file(self, node: Node) -> Path:
        return node.folder / "node.pid"

    def log_file(self, node: Node) -> Path:
        return node.folder / "node.log"

    def pid(self, node: Node) -> int | None:
        """The node's process id while it runs (an exited child of this process is reaped: not running)."""
        try:
            pid = int(self.pid_file(node).read_text().strip())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        if _zombie(pid):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return None
        return pid

    def running(self) -> list[Node]:
        return [n for n in self.nodes if self.pid(n) is not None]

    def cluster_id(self) -> str:
        path = self.root / "cluster.id"
        if not path.exists():
            self.root.mkdir(parents=True, exist_ok=True)
            path.write_text(kafka_security.new_cluster_id())
        return path.read_text().strip()

    def prepare(self, runtime: Runtime) -> None:
        """Certificates and users (sasl_ssl), every node's configuration, and storage formatted once."""
        secure = self.secure_broker()
        if secure is not None:
            secure.prepare(runtime.java)
        cluster_id = self.cluster_id()
        for node in self.nodes:
            node.folder.mkdir(parents=True, exist_ok=True)
            cfg = node.folder / "server.properties"
            cfg.write_text("\n".join([*self.properties(node, runtime.reporter), ""]))
            (node.folder / "log4j2.properties").write_text(runtime.log4j)
            if (node.folder / "data" / "meta.properties").exists():
                continue
            format_args = secure.format_args() if secure is not None else []
            subprocess.run(
                [runtime.java, "-cp", runtime.classpath, "kafka.tools.StorageTool", "format",
                 f"--cluster-id={cluster_id}", f"--config={cfg}", *format_args],
                check=True,
                stdout=subprocess.DEVNULL,
            )  # fmt: skip

    def start(self, node: Node, runtime: Runtime, port_wait: float = 180.0) -> int:
        """Start ``node`` unless it runs; its pid. Its port must be free first: a node that just stopped
        leaves connections in TIME_WAIT on it for a minute, and the ports lie in Linux's ephemeral range,
        where a client's outgoing connection may take one while the node is down."""
        pid = self.pid(node)
        if pid is not None:
            return pid
        if not _wait(lambda: _bindable(node.host, node.port), port_wait, 0.5):
            raise ClusterError(f"{node.name}: port {node.port} still in use after {port_wait:.0f}s")
        heap = runtime.broker_heap if node.role == "broker" else CONTROLLER_HEAP
        with open(self.log_file(node), "ab") as out:
            proc = subprocess.Popen(
                [runtime.java, *heap, "-XX:+UseG1GC", "-Djava.awt.headless=true",
                 f"-Dlog4j2.configurationFile={node.folder / 'log4j2.properties'}",
                 "-cp", runtime.classpath, "kafka.Kafka", str(node.folder / "server.properties")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )  # fmt: skip
        self.pid_file(node).write_text(str(proc.pid))
        return proc.pid

    def stop(self, node: Node, timeout: float = 60.0) -> bool:
        """SIGTERM (a broker's controlled shutdown: its leaderships move first); SIGKILL after ``timeout``.
        True when it was running."""
        pid = self.pid(node)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        if not _wait(lambda: self.pid(node) is None, timeout):
            os.killpg(pid, signal.SIGKILL)
            _wait(lambda: self.pid(node) is None, 10)
        self.pid_file(node).unlink(missing_ok=True)
        return True

    def kill(self, node: Node) -> bool:
        """kill -9: no controlled shutdown, no flush. True when it was running."""
        pid = self.pid(node)
        if pid is None:
            return False
        os.killpg(pid, signal.SIGKILL)
        _wait(lambda: self.pid(node) is None, 10)
        self.pid_file(node).unlink(missing_ok=True)
        return True

    def down(self) -> list[Node]:
        """Stop the brokers, then the controllers (a broker's controlled shutdown needs the quorum)."""
        stopped = [b for b in self.brokers if self.stop(b)]
        return stopped + [c for c in self.controllers if self.stop(c)]

    # ------------------------------------------------------------------ state

    def registered(self, timeout: float = 5.0) -> set[int]:
        """Broker ids the cluster's metadata lists (the unfenced brokers), asked of any broker that answers;
        without confluent-kafka (a bare python3), the brokers whose port is open."""
        try:
            from confluent_kafka import KafkaException
        except ImportError:
            return {b.node_id for b in self.brokers if _port_open(b.host, b.port)}

        if not any(_port_open(b.host, b.port) for b in self.brokers):
            return set()
        try:
            md = self.admin().list_topics(timeout=timeout)
        except KafkaException:
            return set()
        return set(md.brokers)

    def wait_registered(self, wanted: Iterable[int], timeout: float) -> None:
        want = set(wanted)
        if not _wait(lambda: want <= self.registered(), timeout):
            have = sorted(self.registered())
            raise ClusterError(
                f"brokers {sorted(want)} not all registered within {timeout:.0f}s (registered: {have})"
            )

    def metric(self, node: Node, name: str) -> float | None:
        """One unlabelled gauge from ``node``'s metrics endpoint, or None."""
        url = f"http://127.0.0.1:{node.metrics_port}/metrics"
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                text = resp.read().decode()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
        return None

    def quorum_leader(self) -> Node | None:
        """The KRaft quorum's leader, as a running controller reports it (kafka_server_raft_metrics)."""
        for node in self.controllers:
            if self.pid(node) is None:
                continue
            leader = self.metric(node, "kafka_server_raft_metrics_current_leader")
            if leader is not None and leader >= 0:
                for controller in self.controllers:
                    if controller.node_id == int(leader):
                        return controller
        return None

    def leaders(self, topics: Iterable[str]) -> Counter[int]:
        """How many partitions of ``topics`` each broker leads."""
        md = self.admin().list_topics(timeout=10)
        counts: Counter[int] = Counter()
        for name in topics:
            topic = md.topics.get(name)
            for part in topic.partitions.values() if topic is not None else ():
                if part.leader >= 0:
                    counts[part.leader] += 1
        return counts

    def under_replicated(self, topics: Iterable[str] | None = None) -> int:
        """Partitions (of ``topics``, or all) with fewer in-sync replicas than replicas."""
        md = self.admin().list_topics(timeout=10)
        names = set(topics) if topics is not None else set(md.topics)
        return sum(
            1
            for name, topic in md.topics.items()
            if name in names
            for part in topic.partitions.values()
            if len(part.isrs) < len(part.replicas)
        )


def for_role(lines: list[str], role: str) -> list[str]:
    """A combined node's server.properties lines for a broker-only or controller-only node: a broker keeps
    its listeners but the controller's; a controller keeps only the CONTROLLER listener and advertises
    nothing else."""
    out: list[str] = []
    for line in lines:
        key, sep, value = line.partition("=")
        if sep and key in ("listeners", "advertised.listeners"):
            controller = [e for e in value.split(",") if e.startswith("CONTROLLER://")]
            others = [e for e in value.split(",") if not e.startswith("CONTROLLER://")]
            kept = others if role == "broker" else controller
            out.append(f"{key}={','.join(kept)}")
        elif role == "controller" and sep and key == "inter.broker.listener.name":
            continue  # no broker listener on a controller
        else:
            out.append(line)
    return out


def _zombie(pid: int) -> bool:
    """True for a process that exited but was not reaped yet (Linux /proc; elsewhere: never)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] == "Z"


def _bindable(host: str, port: int) -> bool:
    """True when a listener could bind ``host:port`` as Kafka's does: without SO_REUSEADDR, so that the
    TIME_WAIT connections a node leaves for a minute after it stopped count as in use."""
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _wait(check: Callable[[], bool], timeout: float, every: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(every)
