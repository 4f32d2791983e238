#!/usr/bin/env python3
"""A local Apache Kafka broker for tests, the demo and benchmarks: ``up``, ``down``, ``status``.

Order of preference for ``up``:
  1. the broker named by BOOTSTRAP_SERVERS, if one answers there;
  2. an unpacked Apache Kafka in KAFKA_HOME (its libs/ on the classpath);
  3. with no ``java`` but a Docker daemon: the official apache/kafka image;
  4. Apache Kafka assembled from Maven Central with ``mvn`` into .cache/kafka (git-ignored).
Cases 2 and 4 run one combined KRaft broker+controller on 127.0.0.1:$KAFKA_PORT (default 9092; the
controller listens on KAFKA_PORT+1), formatted once, logging to the file ``status`` prints. They load the
Strimzi Metrics Reporter, as Strimzi's Kafka pods do, and serve Prometheus metrics on
http://127.0.0.1:$KAFKA_METRICS_PORT/metrics (default KAFKA_PORT+4).
A second ``up`` while the broker answers is a no-op. Only the standard library and confluent-kafka are used.
KAFKA_SECURITY=sasl_ssl starts a SASL_SSL broker instead (kafka_security.py, docs/security.md).
KAFKA_BROKERS=3 (default 1) starts a cluster instead: three brokers and three KRaft controllers, each its
own process, on ports from KAFKA_PORT on (kafka_cluster.py says which and why); ``node start|stop|
kill NAME`` acts on one of its nodes. ``down`` and ``status`` find a cluster on KAFKA_PORT by themselves.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from login_devtools import ROOT, kafka_cluster, kafka_security

KAFKA_VERSION = os.environ.get("KAFKA_VERSION", "4.3.1")
DOCKER_IMAGE = f"apache/kafka:{KAFKA_VERSION}"
DOCKER_NAME = "login-stream-kafka"
CACHE = Path(os.environ.get("KAFKA_CACHE_DIR", ROOT / ".cache" / "kafka"))
POM = ROOT / "tools" / "kafka" / "pom.xml"


class KafkaSetupError(Exception):
    pass


# --- Strimzi Metrics Reporter ---------------------------------------------------------------------------
# The local broker loads the plug-in Strimzi's Kafka images load for `metricsConfig.type:
# strimziMetricsReporter` (k8s/kafka/kafka.yaml) and configures it as Strimzi 1.2.0's operator does
# (KafkaBrokerConfigurationBuilder), so it exposes the metric names the cluster's Kafka dashboards query.
# Strimzi 1.2.0 ships io.strimzi:server-metrics-reporter 0.4.0, not served by Maven Central here; 0.2.0
# (io.strimzi:metrics-reporter) derives names and labels with the same code (docs/kubernetes.md,
# tests/chart/test_upstream.py).
REPORTER_VERSION = os.environ.get("STRIMZI_METRICS_REPORTER_VERSION", "0.2.0")
REPORTER_GROUPS = "io.strimzi,io.prometheus"  # the reporter and its Prometheus client, nothing of Kafka's
REPORTER_CLASSES = {
    "metric.reporters": "io.strimzi.kafka.metrics.KafkaPrometheusMetricsReporter",
    "kafka.metrics.reporters": "io.strimzi.kafka.metrics.YammerPrometheusMetricsReporter",
}
# Strimzi 1.2.0, cluster-operator/.../model/KafkaCluster.java DEFAULT_METRICS_ALLOW_LIST.
METRICS_ALLOW_LIST = (
    "kafka_cluster_partition.*",
    "kafka_controller_kafkacontroller.*",
    "kafka_controller_controllerstats_uncleanleaderelectionspersec",
    "kafka_log_log_size",
    "kafka_network_requestmetrics.*",
    "kafka_network_socketserver_networkprocessoravgidlepercent",
    "kafka_server_app_info.*",
    "kafka_server_brokertopicmetrics.*",
    "kafka_server_kafkarequesthandlerpool_requesthandleravgidlepercent",
    "kafka_server_kafkaserver_brokerstate",
    "kafka_server_kafkaserver_clusterid",
    "kafka_server_kafkaserver_linux.*",
    "kafka_server_raft.*",
    "kafka_server_replicamanager.*",
    "kafka_server_request_queue_size",
    "kafka_server_socket_server.*",
)


def metrics_port() -> int:
    raw = os.environ.get("KAFKA_METRICS_PORT") or str(port() + 4)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise KafkaSetupError(f"KAFKA_METRICS_PORT={raw!r}: must be a port number 1-65535")
    return int(raw)


def metrics_url() -> str:
    """Where the local broker serves its Prometheus metrics (the Strimzi Metrics Reporter's listener)."""
    return f"http://127.0.0.1:{metrics_port()}/metrics"


def metrics_reporter_config(port: int | None = None) -> list[str]:
    """server.properties lines that load and configure the reporter (Strimzi's keys and allow list),
    serving on ``port`` (default: KAFKA_METRICS_PORT)."""
    return [
        *(f"{key}={cls}" for key, cls in REPORTER_CLASSES.items()),
        "prometheus.metrics.reporter.listener.enable=true",
        f"prometheus.metrics.reporter.listener=http://127.0.0.1:{port or metrics_port()}",
        "prometheus.metrics.reporter.allowlist=" + ",".join(METRICS_ALLOW_LIST),
    ]


def metrics_reporter_classpath() -> str:
    """The reporter's jars, resolved from Maven Central once into .cache/kafka (like the broker's)."""
    libs = CACHE / f"strimzi-metrics-reporter-{REPORTER_VERSION}"
    _mvn_copy(
        libs,
        f"the Strimzi Metrics Reporter {REPORTER_VERSION}",
        [f"-Dstrimzi.metrics.reporter.version={REPORTER_VERSION}", f"-DincludeGroupIds={REPORTER_GROUPS}"],
    )
    return f"{libs}/*"


def _with_metrics_reporter(classpath: str, cfg: Path) -> str:
    """Add the reporter's jars to ``classpath`` and its settings to ``cfg``; without ``mvn`` (only
    possible with KAFKA_HOME) the broker starts without metrics, and says so."""
    try:
        reporter = metrics_reporter_classpath()
    except KafkaSetupError as exc:
        print(f"local_kafka: no Prometheus metrics for this broker: {exc}", file=sys.stderr, flush=True)
        return classpath
    with cfg.open("a", encoding="utf-8") as out:
        out.write("\n".join(["# Strimzi Metrics Reporter", *metrics_reporter_config(), ""]))
    return f"{classpath}{os.pathsep}{reporter}"


def _reporter_answers(timeout: float = 2.0) -> bool:
    import urllib.request

    try:
        with urllib.request.urlopen(metrics_url(), timeout=timeout) as resp:  # noqa: S310 - loopback URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _restart_without_reporter() -> bool:
    """Stop our own broker if it was started before it loaded the reporter; True when it was stopped."""
    cfg = state_dir() / "server.properties"
    if _pid() is None or not cfg.exists() or "prometheus.metrics.reporter" in cfg.read_text():
        return False
    if not shutil.which("mvn") and not (CACHE / f"strimzi-metrics-reporter-{REPORTER_VERSION}").is_dir():
        return False  # it could not load it now either
    print("the local broker runs without the Strimzi Metrics Reporter: restarting it", flush=True)
    down()
    return True


def port() -> int:
    raw = os.environ.get("KAFKA_PORT", "9092")
    if not raw.isdigit() or not 0 < int(raw) < 65535:
        raise KafkaSetupError(f"KAFKA_PORT={raw!r}: must be a port number 1-65534")
    return int(raw)


def host() -> str:
    """The address the client listener binds and advertises (KAFKA_HOST, default 127.0.0.1). The real
    node's pods cannot reach the host's loopback, so k8s_node.py's tier runs a broker on the
    node's bridge address instead; the controller listener stays on 127.0.0.1."""
    raw = os.environ.get("KAFKA_HOST", "") or "127.0.0.1"
    try:
        ipaddress.IPv4Address(raw)
    except ValueError as exc:
        raise KafkaSetupError(f"KAFKA_HOST={raw!r}: must be an IPv4 address of this machine") from exc
    return raw


def local_bootstrap() -> str:
    if brokers() > 1:
        return cluster().bootstrap
    return f"{host()}:{port()}"


# --- KAFKA_BROKERS > 1: a cluster (kafka_cluster.py) -------------------------------------------


def brokers() -> int:
    raw = os.environ.get("KAFKA_BROKERS", "").strip() or "1"
    if not raw.isdigit() or not 1 <= int(raw) <= kafka_cluster.MAX_BROKERS:
        raise KafkaSetupError(f"KAFKA_BROKERS={raw!r}: must be 1 to {kafka_cluster.MAX_BROKERS}")
    return int(raw)


def cluster(count: int | None = None) -> kafka_cluster.Cluster:
    """The cluster on KAFKA_PORT (``count`` brokers, default KAFKA_BROKERS, at least 2)."""
    return kafka_cluster.Cluster(
        port(), max(2, count or brokers()), CACHE, secure=kafka_security.enabled(), host=host()
    )


def _running_cluster() -> kafka_cluster.Cluster | None:
    """A cluster of ours with live nodes on KAFKA_PORT (whatever KAFKA_BROKERS says now), else None."""
    try:
        root = cluster(kafka_cluster.MAX_BROKERS)
    except kafka_cluster.ClusterError:  # a KAFKA_PORT too high for nine slots
        root = cluster()
    live = [n for n in root.nodes if root.pid(n) is not None]
    if not live:
        return None
    count = max((n.index for n in live if n.role == "broker"), default=brokers())
    return cluster(max(count, brokers()))


def runtime() -> kafka_cluster.Runtime:
    """java, the jars and the metrics reporter, resolved as for the single broker."""
    java = _java()
    cp = _classpath()
    reporter: Any = metrics_reporter_config
    try:
        cp = f"{cp}{os.pathsep}{metrics_reporter_classpath()}"
    except KafkaSetupError as exc:
        print(f"local_kafka: no Prometheus metrics for the cluster: {exc}", file=sys.stderr, flush=True)
        reporter = None
    heap = tuple(os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g").split())
    return kafka_cluster.Runtime(java=java, classpath=cp, log4j=LOG4J2, reporter=reporter, broker_heap=heap)


def cluster_up(timeout: float = 180.0, found: kafka_cluster.Cluster | None = None) -> str:
    """Start (or find) the cluster on KAFKA_PORT; its bootstrap address once every broker is registered."""
    if _pid() is not None:
        raise KafkaSetupError(
            f"a single broker runs on KAFKA_PORT={port()}: "
            f"stop it first (`make kafka-down KAFKA_PORT={port()}`)"
        )
    if kafka_security.enabled() and not shutil.which("java"):
        raise KafkaSetupError("KAFKA_SECURITY=sasl_ssl needs java (keytool, the broker); none found")
    found = found or cluster()
    started = [n for n in found.nodes if found.pid(n) is None]
    if started:
        run = runtime()
        found.prepare(run)
        for node in started:
            found.start(node, run)
    try:
        found.wait_registered((b.node_id for b in found.brokers), timeout)
    except kafka_cluster.ClusterError as exc:
        dead = [n.name for n in found.nodes if found.pid(n) is None]
        logs = ", ".join(str(found.log_file(found.node(name))) for name in dead) or f"{found.root}/*/node.log"
        raise KafkaSetupError(f"{exc}; see {logs}") from exc
    factor, min_isr = found.replication()
    print(
        f"Kafka {KAFKA_VERSION}: {found.count} brokers at {found.bootstrap}, {len(found.controllers)} KRaft "
        f"controllers ({found.voters}); replication factor {factor}, min.insync.replicas {min_isr}"
        + (" (already running)" if not started else ""),
        flush=True,
    )
    print(f"logs: {found.root}/<node>/node.log", flush=True)
    secure = found.secure_broker()
    if secure is not None:
        count = secure.grant(kafka_security.service_acls())
        print(f"ACLs: {count} rules for the producer and consumer users\n{secure.describe()}", flush=True)
        print(f"bootstrap for every broker: BOOTSTRAP_SERVERS={found.bootstrap}", flush=True)
    return found.bootstrap


def cluster_status(found: kafka_cluster.Cluster) -> int:
    registered = found.registered()
    print(f"bootstrap: {found.bootstrap}")
    leader = found.quorum_leader()
    for node in found.nodes:
        pid = found.pid(node)
        state = f"running (pid {pid})" if pid else "stopped"
        if node.role == "broker" and pid:
            state += ", registered" if node.node_id in registered else ", not registered"
        if node is leader:
            state += ", quorum leader"
        print(f"{node.name:<13} node.id {node.node_id:<4} {node.address:<16} {state}")
        print(f"{'':<13} log {found.log_file(node)}  metrics http://127.0.0.1:{node.metrics_port}/metrics")
    secure = found.secure_broker()
    if secure is not None and secure.ca_cert.exists():
        print(secure.describe())
    return 0 if registered >= {b.node_id for b in found.brokers} else 1


def node_command(action: str, name: str) -> None:
    found = _running_cluster() or cluster()
    node = found.node(name)
    if action == "start":
        found.prepare(runtime())
        print(f"{name}: started (pid {found.start(node, runtime())})")
    elif action == "stop":
        print(f"{name}: {'stopped' if found.stop(node) else 'was not running'}")
    else:
        print(f"{name}: {'killed (SIGKILL)' if found.kill(node) else 'was not running'}")


def state_dir() -> Path:
    return CACHE / (f"broker-{port()}-sasl_ssl" if kafka_security.enabled() else f"broker-{port()}")


def secure_broker() -> kafka_security.SecureBroker | None:
    """The SASL_SSL side of this broker (KAFKA_SECURITY=sasl_ssl), else None."""
    return kafka_security.SecureBroker(state_dir(), port()) if kafka_security.enabled() else None


def _client_security() -> dict[str, Any]:
    secure = secure_broker()
    if secure is None or not secure.password_file("admin").exists():
        return {}
    return {k: v for k, v in secure.client_config("admin").items() if k != "bootstrap.servers"}


def log_file() -> Path:
    return state_dir() / "broker.log"


def pid_file() -> Path:
    return state_dir() / "broker.pid"


def answers(bootstrap: str, timeout: float = 3.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request."""
    host, _, p = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(p)), timeout=min(timeout, 2.0)):
            pass
    except (OSError, ValueError):
        return False
    try:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient
    except ImportError:  # no client installed: an open port is the best we can tell
        return True
    try:
        md = AdminClient({"bootstrap.servers": bootstrap, **_client_security()}).list_topics(timeout=timeout)
    except KafkaException:
        return False
    return bool(md.brokers)


def _pid() -> int | None:
    try:
        pid = int(pid_file().read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _docker_ok() -> bool:
    if not shutil.which("docker"):
        return False
    return subprocess.run(["docker", "info"], capture_output=True, timeout=20, check=False).returncode == 0


def _mvn_copy(libs: Path, what: str, extra: list[str]) -> None:
    """Resolve tools/kafka/pom.xml's runtime dependencies (filtered by ``extra``) into ``libs`` once."""
    marker = libs / ".complete"
    if marker.exists():
        return
    if not shutil.which("mvn"):
        raise KafkaSetupError(
            f"`mvn` (Apache Maven) is not on PATH: it is needed to assemble {what} "
            "from Maven Central. "
            "Install it (Debian/Ubuntu: `apt-get install maven`; macOS: `brew install maven`), "
            "or set KAFKA_HOME to an unpacked Kafka, or BOOTSTRAP_SERVERS to a running broker."
        )
    print(f"assembling {what} from Maven Central into {libs} ...", flush=True)
    shutil.rmtree(libs, ignore_errors=True)
    subprocess.run(
        [
            "mvn",
            "-q",
            "-B",
            "-f",
            str(POM),
            f"-Dkafka.version={KAFKA_VERSION}",
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
            *extra,
        ],
        check=True,
    )
    marker.write_text(what)


def _classpath() -> str:
    home = os.environ.get("KAFKA_HOME")
    if home:
        libs = Path(home) / "libs"
        if not libs.is_dir():
            raise KafkaSetupError(
                f"KAFKA_HOME={home!r} has no libs/ folder; point it to an unpacked Apache Kafka"
            )
        return f"{libs}/*"
    libs = CACHE / f"libs-{KAFKA_VERSION}"
    _mvn_copy(libs, f"Apache Kafka {KAFKA_VERSION}", [f"-DexcludeGroupIds={REPORTER_GROUPS}"])
    return f"{libs}/*"


LOG4J2 = "\n".join(
    [
        "appender.out.type=Console",
        "appender.out.name=OUT",
        "appender.out.layout.type=PatternLayout",
        "appender.out.layout.pattern=[%d] %p %m (%c)%n",
        "rootLogger.level=INFO",
        "rootLogger.appenderRef.out.ref=OUT",
        "logger.kafka.name=kafka",
        "logger.kafka.level=WARN",
        "logger.apache.name=org.apache.kafka",
        "logger.apache.level=WARN",
        "logger.started.name=kafka.server.KafkaRaftServer",
        "logger.started.level=INFO",
        "",
    ]
)


def _write_config(data: Path) -> Path:
    p = port()
    cfg = state_dir() / "server.properties"
    kafka_security.private_file(  # 0600: in sasl_ssl mode it holds the admin password (JAAS line)
        cfg,
        "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.bootstrap.servers=127.0.0.1:{p + 1}",
                f"listeners=PLAINTEXT://{host()}:{p},CONTROLLER://127.0.0.1:{p + 1}",
                f"advertised.listeners=PLAINTEXT://{host()}:{p},CONTROLLER://127.0.0.1:{p + 1}",
                "controller.listener.names=CONTROLLER",
                "inter.broker.listener.name=PLAINTEXT",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                f"log.dirs={data}",
                "num.partitions=6",
                "offsets.topic.replication.factor=1",
                "offsets.topic.num.partitions=10",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "transaction.state.log.num.partitions=4",
                "share.coordinator.state.topic.replication.factor=1",
                "share.coordinator.state.topic.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "log.retention.hours=24",
                *(secure.properties() if (secure := secure_broker()) else []),
                "",
            ]
        ),
    )
    (state_dir() / "log4j2.properties").write_text(LOG4J2)
    return cfg


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    java = str(Path(java_home) / "bin" / "java") if java_home else shutil.which("java")
    if not java or not Path(java).exists():
        raise KafkaSetupError(
            "`java` is not on PATH: the local Kafka broker needs a Java 17+ runtime. Install one "
            "(Debian/Ubuntu: `apt-get install openjdk-17-jre-headless`; macOS: `brew install openjdk@17`), "
            "or set BOOTSTRAP_SERVERS to a running broker."
        )
    return java


def _start_java() -> None:
    java = _java()
    cp = _classpath()
    kafka_security.private_dir(state_dir())  # 0700: secrets, configuration, and below them the data
    data = kafka_security.private_dir(state_dir() / "data")  # raw login events: the owner's only
    secure = secure_broker()
    if secure is not None:
        secure.prepare(java)
    cfg = _write_config(data)
    cp = _with_metrics_reporter(cp, cfg)
    if not (data / "meta.properties").exists():
        cluster_id = kafka_security.new_cluster_id()
        # the SCRAM users' passwords travel in a 0600 argument file, not on the command line
        # (--cluster-id=: an id may start with "-", which the option parser would take for an option)
        args = [f"--cluster-id={cluster_id}", f"--config={cfg}", "--standalone"]
        args += secure.format_args() if secure else []
        kafka_security.storage_format(java, cp, state_dir(), args)
    heap = os.environ.get("KAFKA_HEAP_OPTS", "-Xms256m -Xmx1g").split()
    with open(log_file(), "ab") as out:
        proc = subprocess.Popen(
            [
                java,
                *heap,
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dlog4j2.configurationFile={state_dir() / 'log4j2.properties'}",
                "-cp",
                cp,
                "kafka.Kafka",
                str(cfg),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    pid_file().write_text(str(proc.pid))


def _start_docker() -> None:
    p = port()
    subprocess.run(["docker", "rm", "-f", DOCKER_NAME], capture_output=True, check=False)
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": "PLAINTEXT://:9092,CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://127.0.0.1:{p}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
        "KAFKA_NUM_PARTITIONS": "6",
    }
    args = ["docker", "run", "-d", "--name", DOCKER_NAME, "-p", f"127.0.0.1:{p}:9092"]
    for k, v in env.items():
        args += ["-e", f"{k}={v}"]
    subprocess.run([*args, DOCKER_IMAGE], check=True, stdout=subprocess.DEVNULL)
    state_dir().mkdir(parents=True, exist_ok=True)
    (state_dir() / "docker").write_text(DOCKER_NAME)


def up(timeout: float = 120.0) -> str:
    """Make sure a broker answers; return its bootstrap address."""
    if brokers() > 1:
        return cluster_up(max(timeout, 180.0))
    named = os.environ.get("BOOTSTRAP_SERVERS")
    if named and answers(named):
        print(f"using the broker at BOOTSTRAP_SERVERS={named}", flush=True)
        return named
    running = _running_cluster()
    if running is not None:
        print(f"a {running.count}-broker cluster runs on KAFKA_PORT={port()}: using it", flush=True)
        return cluster_up(max(timeout, 180.0), running)
    bootstrap = local_bootstrap()
    if answers(bootstrap) and not _restart_without_reporter():
        print(f"Kafka already running at {bootstrap}", flush=True)
        _grant()
        return bootstrap
    if _pid() is None:
        if not os.environ.get("KAFKA_HOME") and not shutil.which("java") and _docker_ok():
            if kafka_security.enabled():
                raise KafkaSetupError("KAFKA_SECURITY=sasl_ssl needs java (keytool, the broker); none found")
            _start_docker()
        else:
            _start_java()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answers(bootstrap):
            print(f"Kafka {KAFKA_VERSION} is up at {bootstrap} (log: {log_file()})", flush=True)
            if _pid() is not None:
                print(f"metrics (Strimzi Metrics Reporter): {metrics_url()}", flush=True)
            _grant()
            return bootstrap
        if _pid() is None and not (state_dir() / "docker").exists():
            raise KafkaSetupError(f"the broker exited during start-up; see {log_file()}")
        time.sleep(0.5)
    raise KafkaSetupError(f"the broker did not answer at {bootstrap} within {timeout:.0f}s; see {log_file()}")


def _grant() -> None:
    """SASL_SSL: (re)create the services' least-privilege ACLs for the configured topic names."""
    secure = secure_broker()
    if secure is not None:
        created = secure.create_topics(kafka_security.service_topics())  # the services' users may not
        topics = ", ".join(kafka_security.service_topics())
        print(f"topics: {topics} ({'created ' + ', '.join(created) if created else 'all there'}, as admin)")
        count = secure.grant(kafka_security.service_acls())
        print(f"ACLs: {count} rules for the producer and consumer users\n{secure.describe()}", flush=True)


def down() -> None:
    running = _running_cluster()
    if running is not None:
        stopped = running.down()
        print(f"stopped the local cluster on port {port()} ({', '.join(n.name for n in stopped)})")
        if _pid() is None:
            return
    docker_marker = state_dir() / "docker"
    if docker_marker.exists():
        subprocess.run(["docker", "rm", "-f", DOCKER_NAME], capture_output=True, check=False)
        docker_marker.unlink()
        print("stopped the Kafka container")
    pid = _pid()
    if pid is None:
        print(f"no local broker running on port {port()}")
        return
    os.killpg(pid, signal.SIGTERM)
    for _ in range(300):
        if _pid() is None:
            break
        time.sleep(0.1)
    else:
        os.killpg(pid, signal.SIGKILL)
    pid_file().unlink(missing_ok=True)
    print(f"stopped the local broker (pid {pid})")


def status() -> int:
    running = _running_cluster()
    if running is not None or brokers() > 1:
        return cluster_status(running or cluster())
    bootstrap = local_bootstrap()
    ok = answers(bootstrap)
    pid = _pid()
    print(f"bootstrap: {bootstrap}")
    print(f"state:     {'running' if ok else 'stopped'}" + (f" (pid {pid})" if pid else ""))
    print(f"log:       {log_file()}")
    print(f"metrics:   {metrics_url()} ({'answers' if ok and _reporter_answers() else 'does not answer'})")
    secure = secure_broker()
    if secure is not None and secure.ca_cert.exists():
        print(secure.describe())
    named = os.environ.get("BOOTSTRAP_SERVERS")
    if named:
        print(f"BOOTSTRAP_SERVERS={named}: {'answers' if answers(named) else 'does not answer'}")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["up", "down", "status", "node", "bootstrap"])
    parser.add_argument("action", nargs="?", choices=["start", "stop", "kill"], help="node: what to do")
    parser.add_argument("name", nargs="?", help="node: broker-1 .. broker-N, controller-1 .. controller-3")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    try:
        if args.command == "node":
            if not args.action or not args.name:
                parser.error("node needs an action (start, stop, kill) and a node name (e.g. broker-2)")
            node_command(args.action, args.name)
            return 0
        if args.command == "bootstrap":  # the address list of KAFKA_PORT and KAFKA_BROKERS
            print(local_bootstrap())
            return 0
        if args.command == "up":
            up(args.timeout)
            return 0
        if args.command == "down":
            down()
            return 0
        return status()
    except (
        KafkaSetupError,
        kafka_cluster.ClusterError,
        kafka_security.SecuritySetupError,
        subprocess.CalledProcessError,
    ) as exc:
        print(f"local_kafka: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
