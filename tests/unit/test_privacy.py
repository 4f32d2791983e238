"""OUTPUT_PRIVACY: IP and device id protected in processed events; detection unaffected."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.privacy import Privacy
from login_consumer.process import Processor
from login_consumer.records import PartitionRef
from login_consumer.stages.user import ROUTE_HEADER, UserStage
from login_consumer.wiring import build_detectors

KEY = "k" * 24
NOW = time.time()
IP = "81.2.69.142"
DEVICE = "device-0123456789"


def _expected_hash(value: str, key: str = KEY) -> str:
    return hmac.new(key.encode(), value.encode(), hashlib.sha256).hexdigest()[:32]


@pytest.mark.parametrize(
    ("value", "truncated"),
    [
        ("81.2.69.142", "81.2.69.0"),
        ("10.1.2.3", "10.1.2.0"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"),
        ("81.2.69.0/24", "81.2.69.0/24"),
        ("81.2.69.142/32", "81.2.69.0/24"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_truncate(value: str, truncated: str) -> None:
    assert Privacy("truncate").address(value) == truncated


def test_hash_is_keyed_and_stable() -> None:
    one, other = Privacy("hash", KEY), Privacy("hash", "x" * 24)
    assert one.address(IP) == one.address(IP) == _expected_hash(IP)
    assert other.address(IP) != one.address(IP)
    assert len(one.address(IP)) == 32
    assert one.device(DEVICE) == _expected_hash(DEVICE)


def test_apply_rewrites_fields_and_evidence() -> None:
    doc: dict[str, Any] = {
        "ip": IP,
        "device_id": DEVICE,
        "detections": [
            {
                "detector": "brute_force",
                "evidence": [f"5 failed logins for this account from {IP} within 300s"],
            },
            {
                "detector": "credential_stuffing",
                "evidence": ["12 accounts failed to log in from 81.2.69.0/24"],
            },
            {"detector": "new_device", "evidence": [f"device {DEVICE} is not among the account's 2 devices"]},
            {"detector": "x", "evidence": ["late by 12:30:00, ipv6 2001:db8::1 seen"]},
        ],
    }
    Privacy("truncate").apply(doc)
    assert doc["ip"] == "81.2.69.0"
    assert doc["device_id"] == DEVICE[:8]
    texts = [line for d in doc["detections"] for line in d["evidence"]]
    assert texts[0] == "5 failed logins for this account from 81.2.69.0 within 300s"
    assert texts[1] == "12 accounts failed to log in from 81.2.69.0/24"
    assert texts[2] == f"device {DEVICE[:8]} is not among the account's 2 devices"
    assert texts[3] == "late by 12:30:00, ipv6 2001:db8:: seen"


def _failure(n: int, user: str = "victim") -> Message:
    event = {
        "user_id": user,
        "ip": IP,
        "timestamp": int(NOW) - 100 + n,
        "device_id": DEVICE,
        "device_type": "iOS",
        "app_version": "2.4.0",
        "outcome": "failure",
        "event_id": f"e-{user}-{n}",
    }
    return Message(topic="user-login", partition=0, offset=n, value=orjson.dumps(event))


def _run(**privacy: str) -> list[dict[str, Any]]:
    settings = load_settings(ConsumerSettings, state_changelog=False, event_time_alignment=False, **privacy)
    detectors = build_detectors(settings)
    detectors.on_assign([PartitionRef("user-login", 0)])
    result = Processor.from_settings(settings, detectors).process([_failure(n) for n in range(8)], NOW)
    return [orjson.loads(value) for _msg, _key, value, _headers in result.outputs]


@pytest.mark.parametrize("mode", ["hash", "truncate"])
def test_detection_is_unaffected(mode: str) -> None:
    plain = _run()
    protected = _run(output_privacy=mode, **({"privacy_key": KEY} if mode == "hash" else {}))
    assert [d["detections"] and [x["detector"] for x in d["detections"]] for d in plain] == [
        d["detections"] and [x["detector"] for x in d["detections"]] for d in protected
    ]
    assert any(d["detections"] for d in plain), "the sequence must trigger brute_force"
    assert [d["risk_score"] for d in plain] == [d["risk_score"] for d in protected]
    for doc in protected:
        text = orjson.dumps(doc).decode()
        assert IP not in text
        assert DEVICE not in text
    assert protected[0]["ip"] == (_expected_hash(IP) if mode == "hash" else "81.2.69.0")


@pytest.mark.parametrize("mode", ["hash", "truncate"])
def test_the_network_stage_is_keyed_by_the_real_network(mode: str) -> None:
    """The repartition record is keyed by the event's real network (credential stuffing counts there),
    while its document and the route header's address are the protected ones."""
    settings = load_settings(
        ConsumerSettings,
        state_changelog=False,
        event_time_alignment=False,
        output_privacy=mode,
        **({"privacy_key": KEY} if mode == "hash" else {}),
    )
    stage = UserStage(
        Processor.from_settings(settings, build_detectors(settings)),
        output_topic="out",
        repartition_topic="net",
        partitions=6,
    )
    records = stage.process([_failure(n) for n in range(3)], NOW).records
    assert {topic for topic, *_ in records} == {"net"}
    assert {key for _, _, key, _, _ in records} == {b"81.2.69.0/24"}
    for _, _, _, value, headers in records:
        route = dict(headers)[ROUTE_HEADER]
        assert IP.encode() not in value
        assert IP.encode() not in route
        assert orjson.loads(value)["ip"].encode() in route


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"output_privacy": "hash"}, "OUTPUT_PRIVACY=hash needs PRIVACY_KEY or PRIVACY_KEY_FILE"),
        ({"output_privacy": "hash", "privacy_key": "short"}, "PRIVACY_KEY: the key must have at least 16"),
        ({"privacy_key": KEY}, "PRIVACY_KEY is set but OUTPUT_PRIVACY=none does not use it"),
        ({"output_privacy": "scramble"}, "OUTPUT_PRIVACY='scramble'"),
    ],
)
def test_bad_privacy_settings_name_the_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(ConsumerSettings, **env)
    assert named in str(info.value)
    assert KEY not in str(info.value)


def test_key_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "privacy-key"
    path.write_text(KEY + "\n")
    settings = load_settings(ConsumerSettings, output_privacy="hash", privacy_key_file=str(path))
    protect = Privacy.from_settings(settings)
    assert protect is not None
    doc: dict[str, Any] = {"ip": IP, "device_id": None, "detections": []}
    protect(doc)
    assert doc == {"ip": _expected_hash(IP), "device_id": None, "detections": []}
    assert settings.safe_dump()["privacy_key"] == ""
    assert Privacy.from_settings(load_settings(ConsumerSettings)) is None
