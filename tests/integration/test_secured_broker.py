"""The secured local broker itself: secrets on disk and on command lines, ACL prefixes, topics made by admin,
and the mutual-TLS listener (client certificates) with the services on it.

Against the session's broker of ``make kafka-up KAFKA_SECURITY=sasl_ssl`` (tests/integration/secured.py),
started through wrappers that record every java, keytool and openssl command line the script runs.
"""

from __future__ import annotations

import shutil
import signal
import stat
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from login_common.settings import load_settings
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics
from login_producer.cli import run as run_producer
from login_producer.config import ProducerSettings
from tests.integration.secured import Names, SecuredKafka, kafka_security
from tests.kafka_utils import drain, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 200


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_and_data_are_the_owners_only(secured_kafka: SecuredKafka) -> None:
    broker = secured_kafka.broker
    state = broker.state
    assert "admin" in (state / "server.properties").read_text()  # it holds the admin password (JAAS)
    assert broker.password("admin") in (state / "server.properties").read_text()
    assert _mode(state / "server.properties") == 0o600
    for folder in (state, state / "data", broker.secrets, broker.tls):
        assert _mode(folder) == 0o700, folder
    for user in (*kafka_security.USERS, "keystore"):
        assert _mode(broker.password_file(user)) == 0o600
    keys = [p for p in broker.tls.iterdir() if p.suffix in (".key", ".pem", ".p12")]
    assert keys, "no key found: the TLS layout changed"
    assert all(_mode(p) == 0o600 for p in keys), {p.name: oct(_mode(p)) for p in keys}
    assert _mode(broker.ca_cert) == 0o644  # the CA certificate is public: clients read it
    assert not list(state.glob(".storage-format*")), "the argument file of the format step is gone"


def test_no_secret_on_any_command_line_the_script_started(secured_kafka: SecuredKafka) -> None:
    broker = secured_kafka.broker
    assert secured_kafka.commands is not None
    recorded = secured_kafka.commands.read_text().splitlines()
    java = [line for line in recorded if line.split(" ", 1)[0].endswith("/java")]
    assert any(" kafka.Kafka " in line for line in java), "the broker's start was not recorded"
    formats = [line for line in java if ".storage-format.args" in line]
    assert len(formats) == 1, "the storage format (SCRAM users) runs once, from an argument file"
    assert any(line.split(" ", 1)[0].endswith("/openssl") for line in recorded)
    # what `ps` shows of the running broker, too
    pid = int((broker.state / "broker.pid").read_text())
    live = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    assert "kafka.Kafka" in live
    for user in (*kafka_security.USERS, "keystore"):
        secret = broker.password(user)
        leaking = [line for line in [*recorded, live] if secret in line]
        assert not leaking, f"{user}'s password on a command line: {leaking[0][:120]}..."


def test_the_pipeline_topics_exist_made_by_admin(secured_kafka: SecuredKafka) -> None:
    """The services' users may not create topics: `kafka-up` made the pipeline's as admin."""
    topics = AdminClient(secured_kafka.config("admin")).list_topics(timeout=10).topics
    for name, partitions in kafka_security.service_topics().items():
        assert name in topics
        assert len(topics[name].partitions) == partitions
    assert "topics: user-login, processed-logins, user-login-dlq" in secured_kafka.up_output
    producer = AdminClient(secured_kafka.config("producer"))
    refused = producer.create_topics([NewTopic(f"made-by-producer-{uuid.uuid4().hex[:6]}", 1)])
    for future in refused.values():
        with pytest.raises(KafkaException) as info:
            future.result(timeout=30)
        assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def _join_errors(config: dict[str, Any], group: str, topic: str) -> set[int]:
    """Error codes a consumer of ``group`` sees within 30 s (GROUP_AUTHORIZATION_FAILED when refused)."""
    errors: list[KafkaError] = []
    consumer = Consumer({**config, "group.id": group, "error_cb": errors.append, "enable.auto.commit": False})
    consumer.subscribe([topic])
    try:
        for _ in range(60):
            errors.extend(m.error() for m in consumer.consume(10, 0.5) if m.error() is not None)
            if consumer.assignment() or {e.code() for e in errors} & {KafkaError.GROUP_AUTHORIZATION_FAILED}:
                break
        return {e.code() for e in errors} | ({0} if consumer.assignment() else set())
    finally:
        consumer.close()


def test_consumer_prefixes_match_only_its_own_names(secured_kafka: SecuredKafka) -> None:
    """Group, transactional id and internal-topic rights end with "-": a look-alike name is refused.
    The default names, as `kafka-up` grants them (GROUP_ID login-consumer, input user-login)."""
    config = secured_kafka.config("consumer")
    group, topic = "login-consumer", "user-login"
    assert 0 in _join_errors(config, group, topic)  # the control: its own group
    assert 0 in _join_errors(config, f"{group}-restore", topic)  # and <GROUP_ID>-...
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in _join_errors(config, f"{group}z-probe", topic)

    def init(transactional_id: str) -> KafkaError | None:
        producer = Producer({**config, "transactional.id": transactional_id})
        try:
            producer.init_transactions(30)
        except KafkaException as exc:
            return exc.args[0]  # type: ignore[no-any-return]
        return None

    assert init(f"{group}-pod-1") is None
    refused = init(f"{group}z-pod-1")
    assert refused is not None
    assert refused.code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED

    admin = AdminClient(config)
    probe = uuid.uuid4().hex[:6]
    for name, allowed in ((f"{group}-probe-{probe}", True), (f"{group}z-{probe}", False)):
        future = admin.create_topics([NewTopic(name, 1)])[name]
        if allowed:
            future.result(timeout=30)
        else:
            with pytest.raises(KafkaException) as info:
                future.result(timeout=30)
            assert info.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


# ---------------------------------------------------------------- mutual TLS


def _certificate(ca_cert: Path, ca_key: Path, name: str, folder: Path) -> tuple[Path, Path]:
    """(certificate, key) for CN=``name``, signed by the CA of ``ca_cert``/``ca_key``."""
    key, csr, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.crt"
    new = ["-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    kafka_security.openssl("req", *new, "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={name}")
    sign = ["-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial", "-days", "1"]
    kafka_security.openssl("x509", "-req", "-in", str(csr), *sign, "-out", str(cert))
    csr.unlink()
    return cert, key


def _mtls_settings(secured: SecuredKafka, user: str) -> dict[str, str]:
    env = secured.broker.client_env_mtls(user)
    return {k.lower(): v for k, v in env.items()} | {
        "bootstrap_servers": f"127.0.0.1:{secured.broker.mtls_port}"
    }


def _metadata(config: dict[str, Any]) -> tuple[bool, list[KafkaError]]:
    errors: list[KafkaError] = []
    client = AdminClient({**config, "error_cb": errors.append, "log_level": 0})
    try:
        client.list_topics(timeout=5)
    except KafkaException:
        client.poll(1.0)
        return False, errors
    return True, errors


def test_mtls_listener_refuses_clients_without_a_certificate_of_its_ca(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    broker = secured_kafka.broker
    assert broker.mtls
    good = broker.client_config_mtls("producer")
    assert _metadata(good)[0]  # the control
    without = {k: v for k, v in good.items() if not k.startswith("ssl.") or k == "ssl.ca.location"}
    answered, errors = _metadata(without)
    assert not answered
    assert any("certificate" in e.str() for e in errors), [e.str() for e in errors]

    # a certificate of another CA: the broker does not trust it
    foreign_ca = kafka_security.make_ca(shutil.which("java") or "java", tmp_path, "someone-else", "changeit")
    cert, key = _certificate(foreign_ca, tmp_path / "ca.key", "producer", tmp_path)
    forged = {**good, "ssl.certificate.location": str(cert), "ssl.key.location": str(key)}
    assert not _metadata(forged)[0]


def _consumer_app(
    secured: SecuredKafka, names: Names, guarantee: str
) -> tuple[ConsumerApp, CollectorRegistry]:
    settings = load_settings(
        ConsumerSettings,
        **_mtls_settings(secured, "consumer"),
        input_topic=names.input,
        output_topic=names.output,
        dlq_topic=names.dlq,
        group_id=names.group,
        metrics_port=0,
        processing_guarantee=guarantee,
        timestamp_max_age_seconds=20 * 365 * 86_400,
    )
    registry = CollectorRegistry()
    return ConsumerApp(settings, ConsumerMetrics.create(registry, guarantee)), registry


def test_services_on_client_certificates_exactly_once_end_to_end(
    secured_kafka: SecuredKafka, granted: Names
) -> None:
    """Producer and consumer authenticate with their certificates (CN=producer, CN=consumer: the same
    users and ACLs as over SCRAM); exactly-once: every event once in the output, none twice."""
    producer = load_settings(
        ProducerSettings,
        **_mtls_settings(secured_kafka, "producer"),
        input_topic=granted.input,
        count=EVENTS,
        rate=0,
        metrics_port=0,
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert run_producer(producer) == 0
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    app, registry = _consumer_app(secured_kafka, granted, "exactly-once")
    with running(app.run, "consumer"):
        out = drain(
            secured_kafka.config("admin"),
            granted.output,
            expected=EVENTS,
            timeout=120,
            isolation="read_committed",
        )
    ids = [orjson.loads(m.value())["event_id"] for m in out]
    assert len(ids) == EVENTS
    assert len(set(ids)) == EVENTS
    assert registry.get_sample_value("login_consumer_errors_total", {"type": "authorization"}) == 0


def test_a_certificate_of_another_name_gets_no_rights(secured_kafka: SecuredKafka, granted: Names) -> None:
    """Authenticated is not authorized: the broker's CA signs a certificate for CN=intruder, whose
    principal has no ACL; its writes are refused."""
    broker = secured_kafka.broker
    tls = broker.tls
    cert, key = _certificate(broker.ca_cert, tls / "ca.key", "intruder", tls)
    try:
        failures: list[KafkaError] = []
        config = {**broker.client_config_mtls("producer"), "ssl.certificate.location": str(cert)}
        config["ssl.key.location"] = str(key)
        producer = Producer({**config, "message.timeout.ms": 15000})
        producer.produce(granted.input, b"{}", on_delivery=lambda err, _m: failures.append(err))
        producer.flush(20)
        assert [e.code() for e in failures if e is not None] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    finally:
        for path in (key, cert):
            path.unlink(missing_ok=True)
