"""The local broker's commands (README "Local Kafka broker"): `make kafka-status`, `make kafka-up` (a
no-op while a broker answers; else it starts one, with the Strimzi Metrics Reporter on KAFKA_PORT+4),
`make kafka-down`, and `make kafka-up KAFKA_SECURITY=sasl_ssl` (SASL_SSL, SCRAM users, least-privilege
ACLs, a mutual-TLS listener, topics made by admin, owner-only secrets). They act on this checkout's
broker on KAFKA_PORT, the one the other tiers use: the module leaves it running as it found it."""

from __future__ import annotations

import re
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient

from tests.readme.conftest import kafka_port, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(1800)]


@pytest.fixture(scope="module", autouse=True)
def plaintext_broker_after() -> Iterator[None]:
    yield
    run("make kafka-down KAFKA_SECURITY=sasl_ssl", timeout=180)
    up = run("make kafka-up", timeout=300)
    assert up.returncode == 0, up.tail()


def status() -> str:
    ran = run("make kafka-status", timeout=60)
    assert ran.returncode == 0, ran.tail()  # the target reports, it does not fail
    return ran.stdout


def pid_of(text: str) -> str:
    found = re.search(r"^state: +running \(pid (\d+)\)", text, re.M)
    return found.group(1) if found else ""


@runs("make kafka-status", "make kafka-up", "make kafka-down")
def test_status_up_and_down_of_the_local_broker() -> None:
    first = run("make kafka-up", timeout=300)
    assert first.returncode == 0, first.tail()
    before = status()
    port = kafka_port()
    assert f"bootstrap: 127.0.0.1:{port}" in before
    assert re.search(r"^log: +\S+broker\.log$", before, re.M), (
        before
    )  # "kafka-status prints the log file's path"
    pid = pid_of(before)
    assert pid, before
    again = run("make kafka-up", timeout=300)  # "A second kafka-up while a broker answers is a no-op"
    assert again.returncode == 0, again.tail()
    assert pid_of(status()) == pid

    down = run("make kafka-down", timeout=180)
    assert down.returncode == 0, down.tail()
    assert f"stopped the local broker (pid {pid})" in down.stdout
    assert re.search(r"^state: +stopped", status(), re.M)

    up = run("make kafka-up", timeout=300)
    assert up.returncode == 0, up.tail()
    assert f"is up at 127.0.0.1:{port}" in up.stdout, up.tail()
    metrics = f"http://127.0.0.1:{port + 4}/metrics"
    assert f"metrics (Strimzi Metrics Reporter): {metrics}" in up.stdout
    with urllib.request.urlopen(metrics, timeout=10) as resp:
        text = resp.read().decode()
    assert "kafka_server_" in text  # the broker's metrics under the names the dashboards query


@runs("make kafka-up KAFKA_SECURITY=sasl_ssl")
def test_kafka_up_with_sasl_ssl_has_scram_users_and_least_privilege_acls() -> None:
    down = run("make kafka-down", timeout=180)  # the plaintext broker holds the port
    assert down.returncode == 0, down.tail()
    ran = run("make kafka-up KAFKA_SECURITY=sasl_ssl", timeout=600)
    assert ran.returncode == 0, ran.tail()
    assert re.search(r"^ACLs: \d+ rules for the producer and consumer users$", ran.stdout, re.M), ran.tail()
    assert "security:  SASL_SSL, SCRAM-SHA-512" in ran.stdout
    settings = {}
    for user in ("admin", "producer", "consumer"):
        line = re.search(rf"^  {user} +(SECURITY_PROTOCOL=SASL_SSL .*)$", ran.stdout, re.M)
        assert line, (user, ran.stdout)
        settings[user] = dict(pair.split("=", 1) for pair in line.group(1).split())

    def client(user: str) -> dict[str, str | int | float | bool]:
        env = settings[user]
        return {
            "bootstrap.servers": f"127.0.0.1:{kafka_port()}",
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": env["SASL_USERNAME"],
            "sasl.password": Path(env["SASL_PASSWORD_FILE"]).read_text().strip(),
            "ssl.ca.location": env["SSL_CA_LOCATION"],
        }

    def send(user: str, topic: str) -> str:
        producer = Producer({**client(user), "message.timeout.ms": 20000})
        errors: list[str] = []
        producer.produce(
            topic, b"readme", callback=lambda err, _msg: errors.append(str(err.name()) if err else "")
        )
        producer.flush(30)
        return errors[0] if errors else "no delivery report"

    # "the pipeline's topics created as admin"
    topics = AdminClient(client("admin")).list_topics(timeout=30).topics
    assert {"user-login", "processed-logins", "user-login-dlq"} <= set(topics), sorted(topics)
    assert send("producer", "user-login") == ""  # the producer may write its input topic
    assert send("consumer", "user-login") == "TOPIC_AUTHORIZATION_FAILED"  # the consumer may not
    assert send("producer", f"readme-{uuid.uuid4().hex[:6]}") in (
        "TOPIC_AUTHORIZATION_FAILED",
        "UNKNOWN_TOPIC_OR_PART",
    )  # nor any topic it has no ACL for
    plain = Producer({"bootstrap.servers": f"127.0.0.1:{kafka_port()}", "socket.timeout.ms": 5000})
    with pytest.raises(KafkaException):
        plain.list_topics(timeout=5)  # no plaintext listener
    # "its secrets ... readable by their owner only"
    for user in ("admin", "producer", "consumer"):
        mode = Path(settings[user]["SASL_PASSWORD_FILE"]).stat().st_mode & 0o777
        assert mode == 0o600, (user, oct(mode))
    # "a mutual-TLS listener (client certificates) on KAFKA_PORT+2"
    mtls_port = kafka_port() + 2
    assert f"mutual TLS (client certificates) at 127.0.0.1:{mtls_port}:" in ran.stdout, ran.tail()
    line = re.search(r"^  producer +(BOOTSTRAP_SERVERS=\S+ SECURITY_PROTOCOL=SSL .*)$", ran.stdout, re.M)
    assert line, ran.stdout
    cert = dict(pair.split("=", 1) for pair in line.group(1).split())
    with_cert = Producer(
        {
            "bootstrap.servers": cert["BOOTSTRAP_SERVERS"],
            "security.protocol": "SSL",
            "ssl.certificate.location": cert["SSL_CERTIFICATE_LOCATION"],
            "ssl.key.location": cert["SSL_KEY_LOCATION"],
            "ssl.ca.location": cert["SSL_CA_LOCATION"],
            "message.timeout.ms": 20000,
        }
    )
    reports: list[str] = []
    with_cert.produce("user-login", b"readme", callback=lambda e, _m: reports.append(e.name() if e else ""))
    with_cert.flush(30)
    assert reports == [""], reports


@runs("make kafka-up KAFKA_BROKERS=3")
def test_kafka_up_with_three_brokers_starts_a_cluster_that_status_and_down_find_by_themselves() -> None:
    # the single broker holds KAFKA_PORT (plaintext, or the SASL_SSL one the test above left)
    run("make kafka-down KAFKA_SECURITY=sasl_ssl", timeout=180)
    down = run("make kafka-down", timeout=180)
    assert down.returncode == 0, down.tail()
    port = kafka_port()
    try:
        ran = run("make kafka-up KAFKA_BROKERS=3", timeout=900)
        assert ran.returncode == 0, ran.tail()
        bootstrap = ",".join(f"127.0.0.1:{port + 20 * i}" for i in range(3))  # broker i on KAFKA_PORT+20(i-1)
        # "three brokers and three KRaft controllers ... replication factor 3 and min.insync.replicas 2"
        assert f"3 brokers at {bootstrap}, 3 KRaft controllers" in ran.stdout, ran.tail()
        assert "replication factor 3, min.insync.replicas 2" in ran.stdout, ran.tail()
        metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=30)
        assert sorted(b.port for b in metadata.brokers.values()) == [port, port + 20, port + 40]

        # "make kafka-down and make kafka-status find it by themselves" (no KAFKA_BROKERS given)
        found = status()
        nodes = re.findall(r"^(\S+) +node\.id +\d+ +127\.0\.0\.1:(\d+) +running", found, re.M)
        assert len(nodes) == 6, found  # three brokers, three controllers, each a process of its own
        brokers = sorted(int(p) for name, p in nodes if name.startswith("broker"))
        assert brokers == [port, port + 20, port + 40], found
        controllers = sorted(int(p) for name, p in nodes if name.startswith("controller"))
        assert controllers == [port + 1, port + 21, port + 41], found  # "controller i one port up"
        stopped = run("make kafka-down", timeout=300)
        assert stopped.returncode == 0, stopped.tail()
        assert f"stopped the local cluster on port {port}" in stopped.stdout, stopped.tail()
    finally:
        run("make kafka-down", timeout=300)
        up = run("make kafka-up", timeout=300)  # "One broker stays the default"
        assert up.returncode == 0, up.tail()
