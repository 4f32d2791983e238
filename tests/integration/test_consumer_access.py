"""Refused, not crashed: the consumer on the real SASL_SSL broker when access is refused (issue 19).

Each case at start-up and mid-stream, under both guarantees: the consumer keeps running (its thread alive,
/healthz fine), /ready answers not ready with the reason, the refusal is counted in
``login_consumer_errors_total{type=...}``; once the right is granted (the password fixed, the topic
created) it recovers without a restart, and every event comes out: none lost, and under exactly-once none
twice (read_committed).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AclBindingFilter, AdminClient
from prometheus_client import CollectorRegistry

from login_common.acls import DESCRIBE, WRITE, Acl, consumer_acls, producer_acls
from login_common.kafka import ensure_topics
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics
from tests.integration.conftest import consumer_settings, wait_for
from tests.integration.secured import Names, SecuredKafka, kafka_security, wait_until_described
from tests.kafka_utils import drain, running

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

GUARANTEES = ["at-least-once", "exactly-once"]
NOW = int(time.time())


def _names() -> Names:
    tag = uuid.uuid4().hex[:8]
    return Names(f"user-login-{tag}", f"processed-logins-{tag}", f"dlq-{tag}", f"login-consumer-{tag}")


def _grant(secured: SecuredKafka, acls: list[Acl], producer_topic: str = "") -> None:
    """Grant the consumer ``acls`` (and the producer its ACLs on ``producer_topic``)."""
    secured.broker.grant(
        {"consumer": acls, **({"producer": producer_acls(producer_topic)} if producer_topic else {})}
    )


def _revoke(secured: SecuredKafka, acl: Acl) -> None:
    """Delete the consumer's ACLs of one rule set (as admin)."""
    _delete(secured, [kafka_security.acl_binding("consumer", rule) for rule in sorted(acl.rules())])


def _delete(secured: SecuredKafka, bindings: list[Any]) -> None:
    """Delete exactly these ACL bindings (as admin)."""
    filters = [
        AclBindingFilter(
            b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation, b.permission_type
        )
        for b in bindings
    ]
    admin = AdminClient(secured.config("admin"))  # held until the futures are done
    for future in admin.delete_acls(filters, request_timeout=30).values():
        future.result(timeout=30)


def _send(secured: SecuredKafka, topic: str, count: int, start: int = 0) -> list[str]:
    """``count`` valid events to ``topic`` as the producer user; their ids."""
    failed: list[str] = []

    def delivered(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(err.name())

    producer = Producer(secured.config("producer", **{"enable.idempotence": True, "on_delivery": delivered}))
    ids: list[str] = []
    for n in range(start, start + count):
        event_id = str(uuid.uuid4())
        ids.append(event_id)
        user = f"u{n % 40}"
        doc = {
            "event_id": event_id,
            "user_id": user,
            "ip": f"81.2.69.{n % 200 + 1}",
            "timestamp": NOW,
        }
        producer.produce(topic, orjson.dumps(doc), user.encode())
    assert producer.flush(30) == 0
    assert not failed, f"events not written: {Counter(failed)}"
    return ids


class Watched:
    """A ConsumerApp running in a thread, with its metrics."""

    def __init__(self, settings: ConsumerSettings) -> None:
        self.registry = CollectorRegistry()
        self.app = ConsumerApp(settings, ConsumerMetrics.create(self.registry, settings.processing_guarantee))
        self.thread: threading.Thread | None = None

    def errors(self, kind: str) -> float:
        return self.registry.get_sample_value("login_consumer_errors_total", {"type": kind}) or 0.0

    def refused(self, kind: str, words: str, *, or_kind: str = "") -> None:
        """The refusal is counted, /ready says why, and the consumer keeps running."""
        kinds = [kind, or_kind] if or_kind else [kind]
        wait_for(
            lambda: sum(self.errors(k) for k in kinds) >= 1, 90, f"a {' or '.join(kinds)} refusal counted"
        )
        wait_for(
            lambda: not self.app.ready()[0] and words in self.app.ready()[1], 30, f"/ready naming {words}"
        )
        time.sleep(2.0)
        assert self.thread is not None
        assert self.thread.is_alive(), "no crash: the consumer keeps running"
        assert self.app.alive()[0]


@contextmanager
def consuming(settings: ConsumerSettings) -> Iterator[Watched]:
    watched = Watched(settings)
    with running(watched.app.run, "consumer"):
        watched.thread = next(t for t in threading.enumerate() if t.name == "consumer")
        yield watched
    assert not watched.thread.is_alive()


def _settings(secured: SecuredKafka, names: Names, guarantee: str, **extra: Any) -> ConsumerSettings:
    connection = secured.service_env("consumer")
    for name in list(extra):
        if name in connection:  # e.g. another SASL_PASSWORD_FILE
            connection[name] = extra.pop(name)
    return consumer_settings(
        connection,
        input_topic=names.input,
        output_topic=names.output,
        dlq_topic=names.dlq,
        group_id=names.group,
        processing_guarantee=guarantee,
        metrics_port=0,
        session_timeout_ms=6_000,
        commit_interval_ms=300,
        **extra,
    )


def _outputs(secured: SecuredKafka, names: Names, ids: list[str], guarantee: str) -> None:
    """Every event came out once (exactly-once, read_committed) or at least once (at-least-once)."""
    out = drain(
        secured.config("admin"), names.output, expected=len(ids), timeout=120, isolation="read_committed"
    )
    got = Counter(orjson.loads(m.value())["event_id"] for m in out)
    assert set(ids) <= set(got), f"lost {len(set(ids) - set(got))} event(s)"
    if guarantee == "exactly-once":
        assert sum(got.values()) == len(ids), "exactly-once: no duplicates"


def _recovered(watched: Watched) -> None:
    wait_for(lambda: watched.app.ready()[0], 90, "/ready 200 again after the grant")


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_refused_input_and_group_at_start_up_then_granted(
    secured_kafka: SecuredKafka, guarantee: str
) -> None:
    names = _names()
    ensure_topics(secured_kafka.config("admin"), {names.input: 3, names.output: 3, names.dlq: 1})
    acls = consumer_acls(names.input, names.output, names.dlq, names.group)
    input_acl, group_acl = acls[0], acls[4]
    assert input_acl.name == names.input
    assert group_acl.resource == "group"
    _grant(secured_kafka, [a for a in acls if a not in (input_acl, group_acl)], names.input)
    wait_until_described(secured_kafka.config("producer"), [names.input])
    ids = _send(secured_kafka, names.input, 60)
    with consuming(_settings(secured_kafka, names, guarantee)) as watched:
        watched.refused("authorization", "authorization failed")
        _grant(secured_kafka, [input_acl, group_acl])
        _outputs(secured_kafka, names, ids, guarantee)
        _recovered(watched)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_missing_input_topic_at_start_up_is_waited_for(secured_kafka: SecuredKafka, guarantee: str) -> None:
    names = _names()  # the input topic does not exist yet: the consumer may not create it
    ensure_topics(secured_kafka.config("admin"), {names.output: 3, names.dlq: 1})
    _grant(secured_kafka, consumer_acls(names.input, names.output, names.dlq, names.group), names.input)
    with consuming(_settings(secured_kafka, names, guarantee)) as watched:
        # a broker that auto-creates topics calls it unauthorized (the consumer may not create it)
        watched.refused("missing_topic", names.input, or_kind="authorization")
        ensure_topics(secured_kafka.config("admin"), {names.input: 3})  # what an admin (or Strimzi) does
        wait_until_described(secured_kafka.config("producer"), [names.input])
        ids = _send(secured_kafka, names.input, 60)
        _outputs(secured_kafka, names, ids, guarantee)
        _recovered(watched)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_wrong_password_at_start_up_then_fixed_without_a_restart(
    secured_kafka: SecuredKafka, granted: Names, guarantee: str, tmp_path: Path
) -> None:
    password_file = tmp_path / "consumer.password"
    password_file.write_text("not-the-password\n")
    password_file.chmod(0o600)
    ids = _send(secured_kafka, granted.input, 60)
    settings = _settings(secured_kafka, granted, guarantee, sasl_password_file=str(password_file))
    with consuming(settings) as watched:
        watched.refused("authentication", "authentication failed")
        password_file.write_text(secured_kafka.broker.password("consumer") + "\n")  # the Secret is fixed
        _outputs(secured_kafka, granted, ids, guarantee)
        _recovered(watched)


def _right(names: Names, right: str) -> Acl:
    """The consumer's ACL a test takes away: the output's Write, or the input's Read (with its Describe)."""
    if right == "output-write":
        return Acl("topic", names.output, "literal", (WRITE,))
    read_input = consumer_acls(names.input, names.output, names.dlq, names.group)[0]
    assert (read_input.resource, read_input.name) == ("topic", names.input)
    return read_input


@pytest.mark.parametrize("right", ["output-write", "input-read"])
@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_right_revoked_mid_stream_then_granted(
    secured_kafka: SecuredKafka, granted: Names, guarantee: str, right: str
) -> None:
    acl = _right(granted, right)
    first = _send(secured_kafka, granted.input, 40)
    with consuming(_settings(secured_kafka, granted, guarantee)) as watched:
        _outputs(secured_kafka, granted, first, guarantee)
        _revoke(secured_kafka, acl)
        time.sleep(2.0)  # the broker applies the change from its metadata log
        second = _send(secured_kafka, granted.input, 40, start=40)
        watched.refused("authorization", "authorization failed")
        _grant(secured_kafka, [acl])
        _outputs(secured_kafka, granted, first + second, guarantee)
        _recovered(watched)


def test_input_read_refused_while_idle_is_ready_again_once_granted(
    secured_kafka: SecuredKafka, granted: Names
) -> None:
    """No event arrives after the grant: nothing but the consumer's probe of the refused partitions
    (intake/refusals.py) can tell that reading works again."""
    read_input = _right(granted, "input-read")
    first = _send(secured_kafka, granted.input, 40)
    with consuming(_settings(secured_kafka, granted, "at-least-once")) as watched:
        _outputs(secured_kafka, granted, first, "at-least-once")
        _revoke(secured_kafka, read_input)
        watched.refused("authorization", "authorization failed")
        time.sleep(35.0)  # past the refusal window: only the held read keeps /ready failed now
        assert not watched.app.ready()[0], "a refused read is not ready while it lasts"
        _grant(secured_kafka, [read_input])
        _recovered(watched)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_changelog_restore_refused_at_start_up_then_granted(
    secured_kafka: SecuredKafka, granted: Names, guarantee: str
) -> None:
    """State to restore (a first run wrote its changelog), then the changelog's Read denied: the next
    start cannot restore, says so, processes nothing (no state, no scoring), and carries on once allowed."""
    first = _send(secured_kafka, granted.input, 40)
    with consuming(_settings(secured_kafka, granted, guarantee)):
        _outputs(secured_kafka, granted, first, guarantee)
    changelog = f"{granted.group}-detector-state"  # ConsumerSettings: <GROUP_ID>-detector-state
    denied = _deny(secured_kafka, changelog, "READ")
    second = _send(secured_kafka, granted.input, 40, start=40)
    try:
        with consuming(_settings(secured_kafka, granted, guarantee)) as watched:
            watched.refused("authorization", "authorization failed")
            _undeny(secured_kafka, denied)
            _outputs(secured_kafka, granted, first + second, guarantee)
            _recovered(watched)
    finally:
        _undeny(secured_kafka, denied)


def test_repartition_purge_refused_is_counted_and_processing_goes_on(
    secured_kafka: SecuredKafka, granted: Names
) -> None:
    """Deleting consumed repartition records is housekeeping: refused, it is counted and logged, events
    keep flowing, and once allowed again the records are purged (the topic's start moves on)."""
    repartition = f"{granted.group}-network-repartition"  # ConsumerSettings.repartition_topic()
    denied = _deny(secured_kafka, repartition, "DELETE")
    try:
        with consuming(_settings(secured_kafka, granted, "at-least-once")) as watched:
            ids = _send(secured_kafka, granted.input, 40)
            _outputs(secured_kafka, granted, ids, "at-least-once")
            more = _send(secured_kafka, granted.input, 40, start=40)
            # PURGE_SECONDS (30 s) after the first commit the consumer tries; the refusal is counted
            wait_for(lambda: watched.errors("authorization") >= 1, 120, "the refused purge counted")
            _outputs(secured_kafka, granted, ids + more, "at-least-once")
            assert watched.thread is not None
            assert watched.thread.is_alive()
            _undeny(secured_kafka, denied)
            wait_for(
                lambda: _start_offsets(secured_kafka, repartition) > 0, 120, "the purge done once allowed"
            )
    finally:
        _undeny(secured_kafka, denied)


def _deny(secured: SecuredKafka, topic: str, operation: str) -> Any:
    """A DENY binding for the consumer on one literal topic (a deny wins over the prefix's allow)."""
    from confluent_kafka.admin import (
        AclBinding,
        AclOperation,
        AclPermissionType,
        ResourcePatternType,
        ResourceType,
    )

    binding = AclBinding(
        ResourceType.TOPIC,
        topic,
        ResourcePatternType.LITERAL,
        "User:consumer",
        "*",
        AclOperation[operation],
        AclPermissionType.DENY,
    )
    admin = AdminClient(secured.config("admin"))
    for future in admin.create_acls([binding], request_timeout=30).values():
        future.result(timeout=30)
    time.sleep(2.0)  # the broker applies the change from its metadata log
    return binding


def _undeny(secured: SecuredKafka, binding: Any) -> None:
    _delete(secured, [binding])


def _start_offsets(secured: SecuredKafka, topic: str) -> int:
    """Sum of the low watermarks of ``topic``'s partitions (as admin)."""
    from confluent_kafka import Consumer, TopicPartition

    probe = Consumer({**secured.config("admin"), "group.id": f"probe-{uuid.uuid4().hex[:6]}"})
    try:
        parts = probe.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(probe.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in parts)
    finally:
        probe.close()


def test_refused_transactional_id_at_start_up_then_granted(
    secured_kafka: SecuredKafka, granted: Names
) -> None:
    rogue = f"rogue-{uuid.uuid4().hex[:8]}"  # outside the consumer's TRANSACTIONAL_ID prefix
    ids = _send(secured_kafka, granted.input, 40)
    settings = _settings(secured_kafka, granted, "exactly-once", transactional_id=rogue)
    with consuming(settings) as watched:
        watched.refused("authorization", "authorization failed")
        _grant(secured_kafka, [Acl("transactionalId", rogue, "literal", (WRITE, DESCRIBE))])
        _outputs(secured_kafka, granted, ids, "exactly-once")
        _recovered(watched)


def test_settings_that_can_never_work_exit_2_in_one_line(secured_kafka: SecuredKafka, granted: Names) -> None:
    # a changelog whose partitions can never match the input topic's: exit 2, one line, no traceback
    ensure_topics(secured_kafka.config("admin"), {f"{granted.group}-detector-state": 5})
    result = subprocess.run(
        [sys.executable, "-m", "login_consumer"],
        env=secured_kafka.process_env("consumer", **_env(granted)),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("login-consumer:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "must match" in lines[0]
    assert "Traceback" not in result.stderr


def _env(names: Names) -> dict[str, str]:
    return {
        "input_topic": names.input,
        "output_topic": names.output,
        "dlq_topic": names.dlq,
        "group_id": names.group,
        "metrics_port": "0",
        "log_format": "json",
    }
