"""The broker tests' one harness, one ``wait_for``, and the secured broker's fixtures.

``consumer_settings`` is the settings block every consumer test starts from (the broker, its topics, its
group, a short session and poll for quick rebalances); ``Pipeline`` is a topology under test: an input
topic of N partitions, an output and a DLQ, a group, a producer to feed events partition by partition, the
consumer as threads of this process (``consumer``), and what came out (``detections``). ``wait_for`` polls
a condition until a deadline and fails naming what it waited for. ``secured_kafka`` is one SASL_SSL broker
per session (tests/integration/secured.py); ``granted``: fresh topics and a group with the producer's and
the consumer's ACLs for them.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from login_common.acls import consumer_acls, producer_acls
from login_common.kafka import ensure_topics
from login_common.settings import load_settings
from login_consumer.app import ConsumerApp
from login_consumer.config import ConsumerSettings
from login_consumer.metrics import ConsumerMetrics
from tests.integration.secured import (
    SCRIPT,
    Names,
    SecuredKafka,
    kafka_security,
    secured_broker,
    wait_until_described,
)
from tests.kafka_utils import drain, running

T = TypeVar("T")


def wait_for(check: Callable[[], T], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll ``check`` until it returns something true (returned); fail naming ``what`` at ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def consumer_settings(
    kafka: str | dict[str, Any],
    *,
    input_topic: str,
    output_topic: str,
    dlq_topic: str,
    group_id: str,
    **overrides: Any,
) -> ConsumerSettings:
    """The consumer's settings for a test: its broker (an address or a whole client config's settings
    overrides), topics and group, then ``overrides``."""
    connection = {"bootstrap_servers": kafka} if isinstance(kafka, str) else dict(kafka)
    return load_settings(
        ConsumerSettings,
        **connection,
        input_topic=input_topic,
        output_topic=output_topic,
        dlq_topic=dlq_topic,
        group_id=group_id,
        **overrides,
    )


class Pipeline:
    """Topics, a group and helpers to feed events and read what came out; consumers run as threads."""

    def __init__(
        self, kafka: str, topics: Callable[..., str], group: str, *, partitions: int = 2, **settings: Any
    ) -> None:
        self.kafka = kafka
        self.partitions = partitions
        self.source = topics("user-login", partitions=partitions)
        self.output = topics("processed-logins", partitions=partitions)
        self.dlq = topics("dlq")
        self.group = group
        defaults: dict[str, Any] = {"session_timeout_ms": 6_000, "poll_timeout": 0.2}
        if settings.get("processing_guarantee") == "exactly-once":
            defaults["transactional_id"] = f"{group}-{uuid.uuid4().hex[:6]}"
        self.settings = consumer_settings(
            kafka,
            input_topic=self.source,
            output_topic=self.output,
            dlq_topic=self.dlq,
            group_id=group,
            **{**defaults, **settings},
        )
        self.producer = Producer({"bootstrap.servers": kafka, "enable.idempotence": True})
        self.sent = 0

    def send(self, events: list[tuple[int, dict[str, Any]]]) -> list[str]:
        """Produce (partition, event) pairs; the events' ids."""
        for partition, doc in events:
            self.producer.produce(
                self.source, orjson.dumps(doc), doc["user_id"].encode(), partition=partition
            )
        assert self.producer.flush(10) == 0
        self.sent += len(events)
        return [doc["event_id"] for _, doc in events]

    def one_by_one(self, events: list[tuple[int, dict[str, Any]]]) -> list[str]:
        """Send events one at a time, each after the previous one's output arrived: the order in which
        two processes see simultaneous events on partitions they each own is a race (see
        docs/detection.md, "Limits"); tests of counting are not about that race."""
        reader = Consumer(
            {
                "bootstrap.servers": self.kafka,
                "group.id": f"reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
            }
        )
        reader.assign([TopicPartition(self.output, p, OFFSET_BEGINNING) for p in range(self.partitions)])
        seen = 0
        ids: list[str] = []
        try:
            for item in events:
                ids += self.send([item])
                deadline = time.monotonic() + 60
                while seen < self.sent and time.monotonic() < deadline:
                    seen += sum(1 for m in reader.consume(100, 0.2) if m.error() is None)
                assert seen >= self.sent, "an output did not arrive"
        finally:
            reader.close()
        return ids

    def detections(self, expected: int | None = None, timeout: float = 90.0) -> dict[str, list[str]]:
        """event_id -> detector names, for everything processed so far (waits for all that was sent)."""
        isolation = "read_committed" if self.settings.exactly_once else "read_uncommitted"
        out = drain(
            self.kafka, self.output, expected=expected or self.sent, timeout=timeout, isolation=isolation
        )
        docs = [orjson.loads(m.value() or b"{}") for m in out]
        return {d["event_id"]: [x["detector"] for x in d["detections"]] for d in docs}

    @contextmanager
    def consumer(self, name: str) -> Iterator[ConsumerApp]:
        app = ConsumerApp(self.settings, ConsumerMetrics.create(CollectorRegistry()))
        with running(app.run, name):
            assert app.assigned.wait(30), "no partitions assigned"
            yield app

    def wait_split(self, apps: list[ConsumerApp], timeout: float = 45.0) -> None:
        """Until the group has spread both topics' partitions over every consumer."""

        def spread() -> bool:
            sizes = [len(app.group.assignment) for app in apps]
            return all(sizes) and sum(sizes) == 2 * self.partitions

        wait_for(spread, timeout, f"partitions spread: {[sorted(a.group.assignment) for a in apps]}")


@pytest.fixture
def pipeline(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> Callable[..., Pipeline]:
    """``pipeline("name", partitions=6, processing_guarantee="exactly-once", ...)``: a Pipeline."""

    def make(name: str, **settings: Any) -> Pipeline:
        return Pipeline(kafka, topic_factory, group_factory(name), **settings)

    return make


@pytest.fixture(scope="session")
def secured_kafka() -> Iterator[SecuredKafka]:
    try:
        with secured_broker() as secured:
            status = subprocess.run(
                [*SCRIPT, "status"],
                env=secured.env,
                capture_output=True,
                text=True,
                check=False,
            )
            broker = secured.broker
            for out in (secured.up_output, status.stdout):  # `make kafka-status`: the settings, no password
                assert "SECURITY_PROTOCOL=SASL_SSL SASL_USERNAME=consumer SASL_PASSWORD_FILE=" in out
                assert f"SSL_CA_LOCATION={broker.ca_cert}" in out
                assert not [u for u in kafka_security.USERS if broker.password(u) in out]
            yield secured
    except RuntimeError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def granted(secured_kafka: SecuredKafka) -> Names:
    """Fresh topics and group, with the producer's and consumer's ACLs for them (as the defaults have)."""
    tag = uuid.uuid4().hex[:8]
    names = Names(f"user-login-{tag}", f"processed-logins-{tag}", f"dlq-{tag}", f"login-consumer-{tag}")
    ensure_topics(secured_kafka.config("admin"), {names.input: 3, names.output: 3, names.dlq: 1})
    secured_kafka.broker.grant(
        {
            "producer": producer_acls(names.input),
            "consumer": consumer_acls(names.input, names.output, names.dlq, names.group),
        }
    )
    wait_until_described(secured_kafka.config("producer"), [names.input])
    wait_until_described(secured_kafka.config("consumer"), [names.input, names.output, names.dlq])
    return names
