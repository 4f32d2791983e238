"""``login-consumer replay-dlq``: after a fix, dead letters go back to the input and get processed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable

import orjson
import pytest
from confluent_kafka import Producer
from prometheus_client import CollectorRegistry

from login_common.contract import HEADER_CORRELATION_ID, HEADER_DLQ_ERROR_TYPE, HEADER_DLQ_REPLAYED_FROM
from login_consumer.app import ConsumerApp
from login_consumer.metrics import ConsumerMetrics
from tests.integration.conftest import consumer_settings
from tests.kafka_utils import drain, running

pytestmark = pytest.mark.integration


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "login_consumer", "replay-dlq", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_replay_dlq_moves_the_chosen_letters_back_and_says_how_many(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    source = topic_factory("user-login", partitions=2)
    output = topic_factory("processed-logins", partitions=2)
    dlq = topic_factory("dlq", partitions=2)
    two_hours_ago = int(time.time()) - 7200
    old = [
        orjson.dumps(
            {"event_id": str(uuid.uuid4()), "user_id": f"u{n}", "ip": "8.8.8.8", "timestamp": two_hours_ago}
        )
        for n in range(12)
    ]
    junk = [b"not json at all %d" % n for n in range(5)]
    producer = Producer({"bootstrap.servers": kafka})
    for n, value in enumerate(old + junk):
        producer.produce(source, value=value, key=b"k%d" % n, headers=[(HEADER_CORRELATION_ID, b"c%d" % n)])
    assert producer.flush(30) == 0

    def consume(max_age: int, expected_out: int, expected_dlq: int) -> tuple[list, list]:
        settings = consumer_settings(
            kafka,
            input_topic=source,
            output_topic=output,
            dlq_topic=dlq,
            group_id=group,
            timestamp_max_age_seconds=max_age,
        )
        app = ConsumerApp(settings, ConsumerMetrics.create(CollectorRegistry()))
        with running(app.run, "consumer"):
            outs = drain(kafka, output, expected=expected_out, timeout=30, idle=2) if expected_out else []
            letters = drain(kafka, dlq, expected=expected_dlq, timeout=30)
        return outs, letters

    group = group_factory("replay")
    # a too strict setting dead-letters the two-hour-old events
    outs, letters = consume(max_age=60, expected_out=0, expected_dlq=17)
    assert outs == []
    kinds = sorted(dict(m.headers())[HEADER_DLQ_ERROR_TYPE].decode() for m in letters)
    assert kinds == ["not_json"] * 5 + ["timestamp_out_of_range"] * 12

    env = {"BOOTSTRAP_SERVERS": kafka, "INPUT_TOPIC": source, "DLQ_TOPIC": dlq, "LOG_FORMAT": "json"}
    dry = _cli(env, "--error-type", "timestamp_out_of_range", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would move 12 message(s)" in dry.stdout
    assert len(drain(kafka, source, timeout=10, idle=2)) == 17  # nothing sent

    bad = _cli(env, "--error-type", "no_such_type")
    assert bad.returncode == 2
    assert "no_such_type" in bad.stderr

    done = _cli(env, "--error-type", "timestamp_out_of_range")
    assert done.returncode == 0, done.stderr
    assert f"moved 12 message(s) from {dlq} to {source}" in done.stdout
    assert "scanned 17, skipped 5" in done.stdout
    everything = drain(kafka, source, expected=29, timeout=20)
    assert len(everything) == 29
    replayed = [m for m in everything if HEADER_DLQ_REPLAYED_FROM in dict(m.headers())]
    assert sorted(m.value() for m in replayed) == sorted(old)  # the original bytes
    for msg in replayed:
        headers = dict(msg.headers())
        assert not any(name.startswith("dlq-") and name != HEADER_DLQ_REPLAYED_FROM for name in headers)
        assert headers[HEADER_DLQ_REPLAYED_FROM].startswith(dlq.encode() + b":")
        assert headers[HEADER_CORRELATION_ID].startswith(b"c")  # the input's own headers are kept
        assert msg.key() is not None

    # the fix: a sane setting; the replayed events now come out processed
    outs, letters = consume(max_age=30 * 86_400, expected_out=12, expected_dlq=17)
    assert sorted(orjson.loads(m.value())["user_id"] for m in outs) == sorted(f"u{n}" for n in range(12))
    assert len(letters) == 17  # nothing new dead-lettered
