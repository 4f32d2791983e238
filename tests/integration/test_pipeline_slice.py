"""The thin end-to-end slice: producer → user-login → consumer → processed-logins, nothing lost."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from login_common.contract import HEADER_CORRELATION_ID, HEADER_SCHEMA_VERSION
from login_common.settings import load_settings
from login_consumer.app import ConsumerApp
from login_consumer.metrics import ConsumerMetrics
from login_producer.cli import run as run_producer
from login_producer.config import ProducerSettings
from tests.integration.conftest import consumer_settings
from tests.kafka_utils import drain, running

pytestmark = pytest.mark.integration

N = 500


def test_every_produced_event_arrives_processed(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    source = topic_factory("user-login", partitions=3)
    output = topic_factory("processed-logins", partitions=3)
    dlq = topic_factory("dlq")

    producer_settings = load_settings(
        ProducerSettings,
        bootstrap_servers=kafka,
        input_topic=source,
        count=N,
        rate=0,
        metrics_port=0,
        seed=7,
        start_time=int(time.time()) - 2 * 86400,  # simulated clock: recent enough to be valid
    )
    assert run_producer(producer_settings, registry=CollectorRegistry()) == 0
    sent = drain(kafka, source, expected=N)
    sent_ids = {json.loads(m.value())["event_id"] for m in sent}
    assert len(sent_ids) == N

    settings = consumer_settings(
        kafka,
        input_topic=source,
        output_topic=output,
        dlq_topic=dlq,
        group_id=group_factory("slice"),
    )
    registry = CollectorRegistry()
    app = ConsumerApp(settings, ConsumerMetrics.create(registry))
    with running(app.run, "consumer"):
        processed = drain(kafka, output, expected=N, timeout=90)

    got_ids = [json.loads(m.value())["event_id"] for m in processed]
    assert set(got_ids) == sent_ids
    assert registry.get_sample_value("login_consumer_events_processed_total") >= N
    headers = dict(processed[0].headers() or [])
    assert headers[HEADER_SCHEMA_VERSION] == b"1"
    assert headers[HEADER_CORRELATION_ID]
    assert drain(kafka, dlq, timeout=2, idle=1) == []
