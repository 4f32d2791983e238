"""A mixed stream on the real broker: every input offset ends up in the output or the DLQ, exactly once.

Dead letters carry the input's bytes unchanged and the dead-letter headers; outputs carry the schema
version and the input's correlation id; offsets are committed up to the end.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from prometheus_client import CollectorRegistry

from login_common.contract import (
    HEADER_CORRELATION_ID,
    HEADER_DLQ_CONSUMER_VERSION,
    HEADER_DLQ_ERROR_DETAIL,
    HEADER_DLQ_ERROR_TYPE,
    HEADER_DLQ_SOURCE_OFFSET,
    HEADER_DLQ_SOURCE_PARTITION,
    HEADER_DLQ_SOURCE_TOPIC,
    HEADER_DLQ_TIME,
    HEADER_SCHEMA_VERSION,
)
from login_consumer.app import ConsumerApp
from login_consumer.enrich import event_id_of
from login_consumer.metrics import ConsumerMetrics
from tests.integration.conftest import consumer_settings
from tests.kafka_utils import drain, running

pytestmark = pytest.mark.integration

NOW = int(time.time())
VALID_COUNT = 300


def _event(n: int, **fields: Any) -> bytes:
    base: dict[str, Any] = {
        "user_id": f"user-{n % 37}",
        "app_version": ("2.2.0", "2.3.1", "2.4.0")[n % 3],
        "ip": ("81.2.69.142", "8.8.8.8", "10.1.2.3", "240.0.0.9", "2001:4860:4860::8888")[n % 5],
        "locale": ("RI", "MD", "TX", "fr", "en_GB")[n % 5],
        "device_id": f"dev-{n % 11}",
        "timestamp": NOW - n if n % 4 else str(NOW - n),
        "device_type": ("android", "iOS", "Web", "IOS")[n % 4],
    }
    if n % 20 == 0:
        del base["device_type"]  # the generator's quirk
    if n % 2 == 0:  # our producer's fields; odd events are in the 7-field generator format
        base.update(event_id=str(uuid.uuid4()), outcome="failure" if n % 10 == 0 else "success")
    base.update(fields)
    return orjson.dumps(base)


# (expected error type, value) - at least 20 kinds of invalid input
INVALID: list[tuple[str, bytes | None]] = [
    ("empty", None),
    ("empty", b""),
    ("too_large", _event(0, user_agent="x" * 5000)),
    ("not_utf8", b"\xff\xfe\xfd"),
    ("not_utf8", b'{"user_id": "\xe9t\xe9", "ip": "1.2.3.4", "timestamp": 1}'),
    ("not_json", b"hello world"),
    ("not_json", _event(1)[:-3]),
    ("not_json", b"[" * 2000 + b"]" * 2000),
    ("not_json", b'{"user_id": "u", "ip": "1.2.3.4", "timestamp": NaN}'),
    ("not_object", b"[1,2]"),
    ("not_object", b"null"),
    ("not_object", b'"a string"'),
    ("missing_field", orjson.dumps({"ip": "1.2.3.4", "timestamp": NOW})),
    ("missing_field", orjson.dumps({"user_id": "u", "ip": None, "timestamp": NOW})),
    ("wrong_type", _event(2, user_id=12345)),
    ("wrong_type", _event(3, timestamp=True)),
    ("wrong_type", _event(4, timestamp=float(NOW))),
    ("wrong_type", _event(5, device_type={"nested": ["junk", {"deeper": None}]})),
    ("invalid_value", _event(6, user_id="   ")),
    ("invalid_value", _event(7, outcome="perhaps")),
    ("invalid_value", _event(8, user_id="u" * 300)),
    ("invalid_ip", _event(9, ip="300.1.1.1")),
    ("invalid_ip", _event(10, ip="not-an-ip")),
    ("invalid_timestamp", _event(11, timestamp="yesterday")),
    ("timestamp_out_of_range", _event(12, timestamp=NOW + 3600)),
    ("timestamp_out_of_range", _event(13, timestamp=NOW - 40 * 86_400)),
    ("timestamp_out_of_range", _event(14, timestamp=NOW * 1000)),
]


def _produce(bootstrap: str, topic: str, records: list[tuple[bytes | None, bytes | None, list[Any]]]) -> dict:
    """Produce in order; return (partition, offset) -> (key, value, headers)."""
    placed: dict[tuple[int, int], tuple[bytes | None, bytes | None, list[Any]]] = {}
    errors: list[KafkaError] = []
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "linger.ms": 5})
    for key, value, headers in records:

        def done(err: KafkaError | None, msg: Message, record: Any = (key, value, headers)) -> None:
            if err is not None:
                errors.append(err)
            else:
                placed[(msg.partition(), msg.offset())] = record

        producer.produce(topic, value=value, key=key, headers=headers or None, on_delivery=done)
    assert producer.flush(30) == 0
    assert not errors
    return placed


def test_mixed_stream_every_offset_accounted_for(
    kafka: str, topic_factory: Callable[..., str], group_factory: Callable[[str], str]
) -> None:
    source = topic_factory("user-login", partitions=3)
    output = topic_factory("processed-logins", partitions=3)
    dlq = topic_factory("dlq")
    records: list[tuple[bytes | None, bytes | None, list[Any]]] = []
    for n in range(VALID_COUNT):
        headers = [(HEADER_CORRELATION_ID, f"corr-{n}".encode())] if n % 3 else []
        records.append((f"user-{n % 37}".encode(), _event(n), headers))
        if n % 12 == 0:
            kind, value = INVALID[(n // 12) % len(INVALID)]
            records.append((None, value, [(HEADER_CORRELATION_ID, f"bad-{n}".encode())]))
    records += [(b"k", value, []) for _, value in INVALID]  # every kind at least once
    expected_invalid = Counter(kind for kind, _ in INVALID)
    for n in range(VALID_COUNT):
        if n % 12 == 0:
            expected_invalid[INVALID[(n // 12) % len(INVALID)][0]] += 1
    placed = _produce(kafka, source, records)
    assert len(placed) == len(records)
    invalid_total = sum(expected_invalid.values())
    assert len(expected_invalid) >= 11
    assert len(INVALID) >= 20

    settings = consumer_settings(
        kafka,
        input_topic=source,
        output_topic=output,
        dlq_topic=dlq,
        group_id=group_factory("routing"),
        max_event_bytes=4096,
        batch_size=64,
    )
    registry = CollectorRegistry()
    app = ConsumerApp(settings, ConsumerMetrics.create(registry))
    with running(app.run, "consumer"):
        outputs = drain(kafka, output, expected=VALID_COUNT, timeout=60)
        letters = drain(kafka, dlq, expected=invalid_total, timeout=30)

    # counts equal, nothing twice
    assert len(outputs) == VALID_COUNT
    assert len(letters) == invalid_total

    # every input offset is accounted for, exactly once
    by_event_id: dict[str, tuple[int, int]] = {}
    for where, (_key, value, _headers) in placed.items():
        if value is None:
            continue
        try:
            decoded = orjson.loads(value)
        except orjson.JSONDecodeError:
            continue
        if isinstance(decoded, dict):
            by_event_id.setdefault(decoded.get("event_id") or event_id_of(value), where)
    accounted: Counter[tuple[int, int]] = Counter()
    for msg in outputs:
        doc = orjson.loads(msg.value())
        where = by_event_id[doc["event_id"]]
        accounted[where] += 1
        headers = dict(msg.headers() or [])
        assert headers[HEADER_SCHEMA_VERSION] == b"1"
        sent_headers = dict(placed[where][2])
        if HEADER_CORRELATION_ID in sent_headers:
            assert headers[HEADER_CORRELATION_ID] == sent_headers[HEADER_CORRELATION_ID]
        else:
            assert headers[HEADER_CORRELATION_ID]
        assert msg.key() == doc["user_id"].encode()
    seen_kinds: Counter[str] = Counter()
    for msg in letters:
        headers = dict(msg.headers() or [])
        where = (int(headers[HEADER_DLQ_SOURCE_PARTITION]), int(headers[HEADER_DLQ_SOURCE_OFFSET]))
        accounted[where] += 1
        key, value, sent_headers = placed[where]
        assert msg.value() == value, "DLQ bytes must equal the input bytes"
        assert msg.key() == key
        assert headers[HEADER_DLQ_SOURCE_TOPIC] == source.encode()
        assert headers[HEADER_DLQ_ERROR_DETAIL]
        assert headers[HEADER_DLQ_CONSUMER_VERSION] == b"0.1.0"
        assert abs(int(headers[HEADER_DLQ_TIME]) / 1000 - time.time()) < 300
        for name, header in sent_headers:
            assert headers[name] == header  # the input's own headers travel along
        seen_kinds[headers[HEADER_DLQ_ERROR_TYPE].decode()] += 1
    assert set(accounted) == set(placed)
    assert set(accounted.values()) == {1}
    assert seen_kinds == expected_invalid

    # metrics agree
    get = registry.get_sample_value
    assert get("login_consumer_events_consumed_total") == len(records)
    assert get("login_consumer_events_processed_total") == VALID_COUNT
    for kind, count in expected_invalid.items():
        assert get("login_consumer_events_dlq_total", {"reason": kind}) == count
    assert get("login_consumer_risk_score_count") == VALID_COUNT
    assert get("login_consumer_event_latency_seconds_count") == VALID_COUNT
    assert get("login_consumer_rebalances_total", {"event": "assign"}) >= 1

    # offsets committed to the end (the consumer was stopped cleanly)
    checker = Consumer({"bootstrap.servers": kafka, "group.id": settings.group_id})
    try:
        committed = checker.committed([TopicPartition(source, p) for p in range(3)], timeout=10)
        for tp in committed:
            _low, high = checker.get_watermark_offsets(tp, timeout=10)
            assert tp.offset == high
    finally:
        checker.close()
