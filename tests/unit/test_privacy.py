"""OUTPUT_PRIVACY: IP and device id protected in processed events; detection unaffected."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from confluent_kafka import Message

from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_consumer.privacy import DEVICE_PREFIX, Privacy
from login_consumer.process import Processor
from login_consumer.records import PartitionRef
from login_consumer.stages.network import NetworkStage
from login_consumer.stages.user import ROUTE_HEADER, UserStage
from login_consumer.wiring import build_detectors, build_network_detector
from login_producer.simulate import ScenarioMix, Simulation

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


# ---------------------------------------------------------------- the whole output, both stages

_V4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")
_V6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")
PARTITIONS = 3


def _simulated(count: int) -> list[dict[str, Any]]:
    """Labelled traffic in which every detector has something to find (the producer's simulation)."""
    mix = ScenarioMix(
        brute_force=0.03,
        credential_stuffing=0.03,
        impossible_travel=0.02,
        account_takeover=0.02,
        new_phone=0.02,
        benign_travel=0.01,
        forgetful=0.02,
    )
    sim = Simulation(seed=3, users=300, start_time=None, rate=0, mix=mix)
    return [e.event for e in itertools.islice(sim.events(), count)]


def _through_both_stages(events: list[dict[str, Any]], **privacy: str) -> list[dict[str, Any]]:
    """Every output document of the user stage and the network stage, wired as the consumer wires them
    (detectors and privacy from the settings), the repartition topic replaced by in-memory messages; last,
    the network labels of the stuffing metric (they leave the consumer too)."""
    settings = load_settings(
        ConsumerSettings,
        state_changelog=False,
        event_time_alignment=False,
        timestamp_max_age_seconds=20 * 365 * 86_400,  # the simulated clock starts in January 2025
        **privacy,
    )
    detectors = build_detectors(settings)
    detectors.on_assign([PartitionRef("user-login", 0)])
    processor = Processor.from_settings(settings, detectors)
    user = UserStage(
        processor,
        output_topic="out",
        repartition_topic="net",
        partitions=PARTITIONS,
        stuffing_prefix=settings.stuffing_prefix,
    )
    detector = build_network_detector(settings)
    assert detector is not None
    detector.on_assign([PartitionRef("net", p) for p in range(PARTITIONS)])
    network = NetworkStage(detector, processor.risk, output_topic="out", merge=False)
    outputs: list[bytes] = []
    labels: dict[str, int] = {}
    offsets = [0] * PARTITIONS
    for start in range(0, len(events), 500):
        batch = [
            Message(topic="user-login", partition=0, offset=start + n, value=orjson.dumps(event))
            for n, event in enumerate(events[start : start + 500])
        ]
        repartitioned = []
        for topic, partition, key, value, headers in user.process(batch, time.time()).records:
            if topic == "out":
                outputs.append(value)
                continue
            msg = Message(
                topic=topic,
                partition=partition,
                offset=offsets[partition],
                key=key,
                value=value,
                headers=headers,
            )
            offsets[partition] += 1
            repartitioned.append(msg)
        result = network.process(repartitioned)
        outputs.extend(value for _t, _p, _k, value, _h in result.records)
        # the metric the credential-stuffing alert groups by: its `network` label is output too
        labels.update(result.stats.stuffing)
    assert len(outputs) == len(events)
    return [*(orjson.loads(value) for value in outputs), {"login_consumer_stuffing_network_accounts": labels}]


def _strings(node: Any) -> Iterator[str]:
    """Every key and every string value of a document, at any depth."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _strings(value)


def _leaks(docs: list[dict[str, Any]], events: list[dict[str, Any]], mode: str) -> Counter[str]:
    """What of the raw addresses, networks and device ids shows in any field of any output."""
    ips = {e["ip"] for e in events}
    nets = {_truncated(ip) for ip in ips}  # the network address of each one's /24 (or /64)
    devices = {e["device_id"] for e in events if e.get("device_id") and len(e["device_id"]) > DEVICE_PREFIX}
    leaks: Counter[str] = Counter()
    for doc in docs:
        for text in _strings(doc):
            for token in [*_V4.findall(text), *_V6.findall(text)]:
                if token in ips and not (mode == "truncate" and token in nets):
                    leaks["address"] += 1
                elif token in nets and mode != "truncate":  # hash: not even the network may show
                    leaks["network"] += 1
            if text in devices or any(word.strip(".,;:()'\"") in devices for word in text.split()):
                leaks["device_id"] += 1
    return leaks


def _truncated(address: str) -> str:
    return Privacy("truncate").address(address)


@pytest.fixture(scope="module")
def simulated() -> list[dict[str, Any]]:
    return _simulated(4000)


@pytest.mark.parametrize("mode", ["hash", "truncate"])
def test_no_output_field_of_any_detector_shows_a_raw_address_network_or_device(
    simulated: list[dict[str, Any]], mode: str
) -> None:
    """Both stages, every detector: the network stage's credential_stuffing evidence (added after the
    user stage protected the document) is protected like the rest of it."""
    plain = _through_both_stages(simulated)
    found = Counter(d["detector"] for doc in plain for d in doc.get("detections", ()))
    assert set(found) >= {
        "brute_force",
        "credential_stuffing",
        "impossible_travel",
        "new_device",
        "new_country",
    }
    # the control: without privacy the scan finds every kind of raw value, in the evidence too
    control = _leaks(plain, simulated, "none")
    assert control["address"] > 0
    assert control["network"] > 0
    assert control["device_id"] > 0
    stuffing = [
        line
        for doc in plain
        for d in doc.get("detections", ())
        if d["detector"] == "credential_stuffing"
        for line in d["evidence"]
    ]
    assert any("/24" in line for line in stuffing)

    protected = _through_both_stages(
        simulated, output_privacy=mode, **({"privacy_key": KEY} if mode == "hash" else {})
    )
    assert _leaks(protected, simulated, mode) == Counter()
    # detection is unaffected: the same detectors fire on the same events
    assert [[d["detector"] for d in doc.get("detections", ())] for doc in plain] == [
        [d["detector"] for d in doc.get("detections", ())] for doc in protected
    ]
    protected_stuffing = [
        line
        for doc in protected
        for d in doc.get("detections", ())
        if d["detector"] == "credential_stuffing"
        for line in d["evidence"]
    ]
    assert len(protected_stuffing) == len(stuffing)
    assert len(protected[-1]["login_consumer_stuffing_network_accounts"]) == len(
        plain[-1]["login_consumer_stuffing_network_accounts"]
    )
    if mode == "hash":
        assert all(re.search(r"from [0-9a-f]{32} within", line) for line in protected_stuffing)
    else:
        assert protected_stuffing == stuffing  # a /24 is what truncate keeps
