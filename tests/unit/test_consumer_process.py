"""The in-process batch path and the detector seam, on in-memory confluent-kafka Messages."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import jsonschema
import orjson
import pytest
from confluent_kafka import Message

from login_common.contract import HEADER_CORRELATION_ID, HEADER_SCHEMA_VERSION, processed_schema
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.detectors.base import DetectBatch, Detection, Detectors, NoDetectors
from login_consumer.process import Processor
from login_consumer.records import PartitionRef

NOW = time.time()


def _msg(value: bytes | None, offset: int = 0, headers: list[tuple[str, bytes]] | None = None) -> Message:
    return Message(topic="user-login", partition=offset % 3, offset=offset, value=value, headers=headers)


def _event(n: int, **fields: Any) -> bytes:
    event = {
        "user_id": f"user-{n % 7}",
        "ip": "81.2.69.142" if n % 2 else "10.0.0.1",
        "timestamp": int(NOW) - n,
        "locale": "RI",
        "device_type": "iOS",
        "app_version": "2.3.0",
        "device_id": f"d{n % 7}",
        "event_id": f"e{n}",
        **fields,
    }
    return orjson.dumps(event)


@pytest.fixture(scope="module")
def settings() -> ConsumerSettings:
    return load_settings(ConsumerSettings, metrics_port=0)


def test_every_message_is_routed_once(settings: ConsumerSettings) -> None:
    batch = [_msg(_event(n), n) for n in range(20)] + [_msg(b"junk", 20), _msg(None, 21), _msg(b"[]", 22)]
    result = Processor.from_settings(settings).process(batch, NOW)
    assert len(result.outputs) + len(result.dead) == len(batch)
    assert sorted(m.offset() for m, *_ in result.outputs) == list(range(20))
    assert sorted(why.error_type for _, why in result.dead) == ["empty", "not_json", "not_object"]
    assert result.stats.consumed == 23
    assert sum(result.stats.levels.values()) == 20
    assert result.stats.dlq == {"empty": 1, "not_json": 1, "not_object": 1}
    validator = jsonschema.Draft202012Validator(processed_schema())
    for msg, key, value, headers in result.outputs:
        doc = orjson.loads(value)
        validator.validate(doc)
        assert key == doc["user_id"].encode()
        assert doc["event_id"] == f"e{msg.offset()}"
        names = dict(headers)
        assert names[HEADER_SCHEMA_VERSION] == b"1"
        assert names["content-type"] == b"application/json"


def test_correlation_id_is_kept_or_created(settings: ConsumerSettings) -> None:
    batch = [
        _msg(_event(1), 1, [(HEADER_CORRELATION_ID, b"abc-123")]),
        _msg(_event(2), 2),
        _msg(_event(3), 3, [("other", b"x")]),
    ]
    result = Processor.from_settings(settings).process(batch, NOW)
    ids = [dict(h)[HEADER_CORRELATION_ID] for *_, h in result.outputs]
    assert ids[0] == b"abc-123"
    assert len(set(ids)) == 3
    assert all(len(i) == 36 for i in ids[1:])  # UUID-shaped


def test_metric_aggregates(settings: ConsumerSettings) -> None:
    batch = [_msg(_event(n, outcome="failure", user_agent="curl/8"), n) for n in range(6)]
    stats = Processor.from_settings(settings).process(batch, NOW).stats
    assert stats.levels == {"high": 6}
    assert sum(stats.flagged_users.values()) == 6
    assert sum(stats.flagged_ips.values()) == 6
    assert set(stats.geo) <= {("GB", "EU", "-"), ("US", "NA", "Northeast")}
    assert set(stats.platforms) == {("ios", "2.3")}
    assert len(stats.risk_scores) == 6
    assert stats.seconds > 0


class FakeDetectors:
    """Flags every failed login; counts calls; raises on demand."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.batches: list[DetectBatch] = []
        self.assigned: list[PartitionRef] = []

    def detect(self, batch: DetectBatch) -> Mapping[int, Sequence[Detection]]:
        if self.fail:
            raise RuntimeError("detector bug")
        self.batches.append(batch)
        return {
            i: [Detection("brute_force", (f"failure by {doc['user_id']}",), 35)]
            for i, doc in enumerate(batch.events)
            if doc["outcome"] == "failure"
        }

    def on_assign(self, partitions: Sequence[PartitionRef]) -> None:
        self.assigned.extend(partitions)

    def on_revoke(self, partitions: Sequence[PartitionRef], *, lost: bool) -> None:
        return None

    def state_sizes(self) -> Mapping[str, int]:
        return {"failures": 1}


def test_detections_flow_into_output_reasons_risk_and_stats(settings: ConsumerSettings) -> None:
    detectors = FakeDetectors()
    assert isinstance(detectors, Detectors)
    batch = [_msg(_event(n, outcome="failure" if n == 3 else "success"), n) for n in range(1, 6)]
    plain = Processor.from_settings(settings).process(batch, NOW)
    result = Processor.from_settings(settings, detectors).process(batch, NOW)
    seen = detectors.batches[0]
    assert [d["event_id"] for d in seen.events] == [f"e{n}" for n in range(1, 6)]
    assert list(seen.partitions) == [n % 3 for n in range(1, 6)]
    assert list(seen.offsets) == list(range(1, 6))
    docs = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, _, v, _ in result.outputs}
    before = {orjson.loads(v)["event_id"]: orjson.loads(v) for _, _, v, _ in plain.outputs}
    flagged = docs["e3"]
    assert flagged["detections"] == [
        {"detector": "brute_force", "evidence": ["failure by user-3"], "risk": 35}
    ]
    assert flagged["reasons"][-1] == "brute_force"
    assert flagged["risk_score"] == min(100, before["e3"]["risk_score"] + 35)
    assert docs["e1"]["detections"] == []
    assert result.stats.detections == {"brute_force": 1}
    assert result.stats.flagged_users["user-3"] == 1


def test_a_failing_detector_does_not_stop_the_batch(settings: ConsumerSettings) -> None:
    batch = [_msg(_event(n), n) for n in range(4)]
    result = Processor.from_settings(settings, FakeDetectors(fail=True)).process(batch, NOW)
    assert len(result.outputs) == 4
    assert result.stats.errors == {"processing": 1}


def test_an_enrichment_error_dead_letters_the_event(
    settings: ConsumerSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    processor = Processor.from_settings(settings)
    original = processor.enricher.enrich

    def flaky(event: Any, *args: Any) -> Any:
        if event.user_id == "user-2":
            raise ValueError("boom")
        return original(event, *args)

    monkeypatch.setattr(processor.enricher, "enrich", flaky)
    result = processor.process([_msg(_event(n), n) for n in range(5)], NOW)
    assert len(result.outputs) == 4
    assert [(m.offset(), why.error_type) for m, why in result.dead] == [(2, "processing_error")]
    assert "boom" in result.dead[0][1].detail


def test_no_detectors_is_the_default(settings: ConsumerSettings) -> None:
    processor = Processor.from_settings(settings)
    assert isinstance(processor.detectors, NoDetectors)
    assert processor.detectors.state_sizes() == {}


def test_output_schema_is_a_valid_json_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(processed_schema())
    assert processed_schema()["properties"]["schema_version"] == {"const": 1}
