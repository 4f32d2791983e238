"""The pipeline on a real SASL_SSL broker (``KAFKA_SECURITY=sasl_ssl`` of login_devtools/local_kafka.py).

One secured broker per session (tests/integration/secured.py, removed afterwards), SCRAM-SHA-512 users admin,
producer and consumer, StandardAuthorizer with the least-privilege ACLs of login_common.acls. Each test
works on its own uuid topics and group, granted like the defaults are.
"""

from __future__ import annotations

import shutil
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from prometheus_client import CollectorRegistry

from login_common.acls import READ, Acl
from login_common.kafka import ensure_topics
from login_common.settings import load_settings
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics
from login_producer.cli import run as run_producer
from login_producer.config import ProducerSettings
from tests.integration.conftest import wait_for
from tests.integration.secured import Names, SecuredKafka, kafka_security
from tests.kafka_utils import drain, running

# the first test also waits for the secured broker (its start-up is slow on a busy machine)
pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

EVENTS = 200


def _consumer_settings(secured: SecuredKafka, names: Names, **extra: Any) -> ConsumerSettings:
    return load_settings(
        ConsumerSettings,
        **secured.service_env("consumer"),
        input_topic=names.input,
        output_topic=names.output,
        dlq_topic=names.dlq,
        group_id=names.group,
        metrics_port=0,
        **extra,
    )


@pytest.mark.parametrize("guarantee", ["at-least-once", "exactly-once"])
def test_pipeline_over_sasl_ssl_with_per_service_users(
    secured_kafka: SecuredKafka, granted: Names, guarantee: str
) -> None:
    producer_settings = load_settings(
        ProducerSettings,
        **secured_kafka.service_env("producer"),
        input_topic=granted.input,
        count=EVENTS,
        rate=0,
        metrics_port=0,
    )
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        assert run_producer(producer_settings) == 0  # every event acknowledged over SASL_SSL
    finally:  # the producer's CLI installs its own SIGINT/SIGTERM handlers
        for sig, handler in handlers.items():
            signal.signal(sig, handler)

    settings = _consumer_settings(
        secured_kafka,
        granted,
        processing_guarantee=guarantee,
        timestamp_max_age_seconds=20 * 365 * 86_400,  # the simulated clock starts in January 2025
    )
    registry = CollectorRegistry()
    app = ConsumerApp(settings, ConsumerMetrics.create(registry, guarantee))
    with running(app.run, "consumer"):
        out = drain(
            secured_kafka.config("admin"),
            granted.output,
            expected=EVENTS,
            timeout=90,
            isolation="read_committed",
        )
    assert len(out) == EVENTS
    assert len({orjson.loads(m.value())["event_id"] for m in out}) == EVENTS
    dead = registry.get_sample_value("login_consumer_events_dlq_total", {"reason": "timestamp_out_of_range"})
    assert dead == 0
    assert registry.get_sample_value("login_consumer_errors_total", {"type": "authorization"}) == 0
    # the detector state went to the consumer's own internal topic (prefixed ACL: create, write)
    topics = AdminClient(secured_kafka.config("consumer")).list_topics(timeout=10).topics
    assert f"{granted.group}-detector-state" in topics


def _errors_until(client_errors: list[KafkaError], wanted: set[int], poll: Callable[[], None]) -> set[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not wanted & {e.code() for e in client_errors}:
        poll()
    return {e.code() for e in client_errors}


def _admin_errors(config: dict[str, Any]) -> tuple[bool, list[KafkaError]]:
    """(metadata answered?, client errors) for one AdminClient configuration."""
    errors: list[KafkaError] = []
    client = AdminClient({**config, "error_cb": errors.append, "log_level": 0})
    try:
        client.list_topics(timeout=4)
    except KafkaException as exc:
        errors.append(exc.args[0])
        client.poll(1.0)  # serve error_cb: the reason (authentication, TLS) comes through it
        return False, errors
    return True, errors


def test_refused_without_credentials_with_a_wrong_password_or_a_foreign_ca(
    secured_kafka: SecuredKafka, tmp_path: Path
) -> None:
    good = secured_kafka.config("producer")
    assert _admin_errors(good)[0]  # the control: the same client with the right settings gets in

    no_sasl = {k: v for k, v in good.items() if not k.startswith("sasl.")} | {"security.protocol": "ssl"}
    assert not _admin_errors(no_sasl)[0]
    assert not _admin_errors({"bootstrap.servers": secured_kafka.bootstrap})[0]  # plaintext

    answered, errors = _admin_errors({**good, "sasl.password": "not-the-password"})
    assert not answered
    assert any(e.code() == KafkaError._AUTHENTICATION and "invalid credentials" in e.str() for e in errors)

    foreign = kafka_security.make_ca(shutil.which("java") or "java", tmp_path, "someone-else", "changeit")
    answered, errors = _admin_errors({**good, "ssl.ca.location": str(foreign)})
    assert not answered
    assert any(e.code() == KafkaError._SSL or "certificate verify failed" in e.str() for e in errors)


def test_producer_user_cannot_read_the_output_or_join_the_consumer_group(
    secured_kafka: SecuredKafka, granted: Names
) -> None:
    errors: list[KafkaError] = []
    # a group of its own (granted for this probe only), so that the refusal seen is the topic's
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    secured_kafka.broker.grant({"producer": [Acl("group", probe, "literal", (READ,))]})
    reader = Consumer(
        secured_kafka.config(
            "producer", **{"group.id": probe, "error_cb": errors.append, "enable.auto.commit": False}
        )
    )
    reader.subscribe([granted.output])

    def consume(c: Consumer = reader) -> None:
        errors.extend(m.error() for m in c.consume(10, 0.5) if m.error() is not None)

    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in _errors_until(
        errors, {KafkaError.TOPIC_AUTHORIZATION_FAILED}, consume
    )
    reader.close()

    errors.clear()
    joiner = Consumer(
        secured_kafka.config("producer", **{"group.id": granted.group, "error_cb": errors.append})
    )
    joiner.subscribe([granted.input])
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in _errors_until(
        errors, {KafkaError.GROUP_AUTHORIZATION_FAILED}, lambda: consume(joiner)
    )
    joiner.close()


def test_consumer_user_cannot_write_the_input_topic(secured_kafka: SecuredKafka, granted: Names) -> None:
    failures: list[KafkaError] = []
    producer = Producer(secured_kafka.config("consumer", **{"message.timeout.ms": 15000}))
    producer.produce(granted.input, b"{}", on_delivery=lambda err, _msg: failures.append(err))
    producer.flush(20)
    assert [e.code() for e in failures if e is not None] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]


@pytest.mark.parametrize(
    ("guarantee", "refused"),
    [("at-least-once", "group and topics"), ("exactly-once", "transactional id")],
)
def test_consumer_reports_an_authorization_failure_and_keeps_running(
    secured_kafka: SecuredKafka, granted: Names, guarantee: str, refused: str
) -> None:
    if refused == "group and topics":  # nothing granted for these names
        tag = uuid.uuid4().hex[:8]
        ensure_topics(secured_kafka.config("admin"), {f"ungranted-{tag}": 1})
        names = Names(f"ungranted-{tag}", granted.output, granted.dlq, f"ungranted-{tag}")
        extra: dict[str, Any] = {}
    else:  # topics and group granted, but a transactional id outside the consumer's prefix
        names = granted
        extra = {"transactional_id": f"rogue-{uuid.uuid4().hex[:8]}"}
    settings = _consumer_settings(secured_kafka, names, processing_guarantee=guarantee, **extra)
    registry = CollectorRegistry()
    app = ConsumerApp(settings, ConsumerMetrics.create(registry, guarantee))

    def refused_count() -> float:
        return registry.get_sample_value("login_consumer_errors_total", {"type": "authorization"}) or 0.0

    holder: dict[str, threading.Thread] = {}
    with running(app.run, "consumer") as _stop:
        holder["thread"] = next(t for t in threading.enumerate() if t.name == "consumer")
        wait_for(lambda: refused_count() >= 1, 30, "an authorization error counted")
        ok, detail = app.ready()
        assert not ok
        assert "authorization failed" in detail
        time.sleep(1.0)
        assert holder["thread"].is_alive(), "the consumer must keep running (no crash loop)"
        assert app.alive()[0]
    assert not holder["thread"].is_alive()  # and it stops cleanly when told to
