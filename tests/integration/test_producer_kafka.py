"""The producer against the real broker: keys, headers (ground truth), counts, metrics, SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from login_common.contract import (
    DETECTORS,
    FETCH_FIELDS,
    HEADER_ATTACK_ID,
    HEADER_COUNTRY,
    HEADER_SCENARIO,
    HEADER_SCHEMA_VERSION,
    HEADER_TRUTH,
)
from login_common.kafka import header_value
from login_common.settings import load_settings
from login_producer.cli import run
from login_producer.config import ProducerSettings
from login_producer.simulate import ATTACKS
from tests.kafka_utils import drain

pytestmark = pytest.mark.integration

N = 2000


def test_events_keys_and_ground_truth_headers(
    kafka: str, topic_factory: Callable[..., str], tmp_path: Path
) -> None:
    topic = topic_factory("user-login", partitions=3)
    common = {"count": N, "rate": 0, "seed": 21, "users": 400, "brute_force_ratio": 0.05}
    registry = CollectorRegistry()
    settings = load_settings(
        ProducerSettings, bootstrap_servers=kafka, input_topic=topic, metrics_port=0, **common
    )
    assert run(settings, registry=registry) == 0
    messages = drain(kafka, topic, expected=N)
    assert len(messages) == N

    # the same settings written to a file give the same events, labels beside them
    file_settings = load_settings(ProducerSettings, **common)
    assert run(file_settings, out=str(tmp_path / "same.jsonl")) == 0
    expected = {}
    for line in (tmp_path / "same.jsonl").read_text().splitlines():
        rec = json.loads(line)
        expected[rec["event_id"]] = (rec.pop("_label"), rec)

    by_partition: dict[int, list[int]] = {}
    attacks = 0
    for msg in messages:
        event = json.loads(msg.value())
        label, same = expected[event["event_id"]]
        assert event == same
        assert msg.key() == event["user_id"].encode()
        assert header_value(msg, HEADER_SCHEMA_VERSION) == b"1"
        assert header_value(msg, HEADER_SCENARIO) == label["scenario"].encode()
        truth = header_value(msg, HEADER_TRUTH)
        assert truth is not None
        assert truth.decode() == ",".join(label["truth"])
        assert set(filter(None, truth.decode().split(","))) <= set(DETECTORS)
        assert header_value(msg, HEADER_COUNTRY) == label["country"].encode()
        if label["scenario"] in ATTACKS:
            attacks += 1
            assert header_value(msg, HEADER_ATTACK_ID) == label["attack_id"].encode()
        else:
            assert header_value(msg, HEADER_ATTACK_ID) is None
        by_partition.setdefault(msg.partition(), []).append(event["timestamp"])
    assert attacks > 0
    for stamps in by_partition.values():
        assert stamps == sorted(stamps)  # event time never goes back within a partition

    assert registry.get_sample_value("login_producer_events_delivered_total") == N
    assert registry.get_sample_value("login_producer_delivery_latency_seconds_count") == N
    assert registry.get_sample_value("login_producer_events_sent_total", {"scenario": "brute_force"})


def test_fetch_format_on_kafka_has_no_labels(kafka: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory("user-login")
    settings = load_settings(
        ProducerSettings,
        bootstrap_servers=kafka,
        input_topic=topic,
        metrics_port=0,
        count=300,
        rate=0,
        output_format="fetch",
    )
    assert run(settings, registry=CollectorRegistry()) == 0
    messages = drain(kafka, topic, expected=300)
    assert len(messages) == 300
    for msg in messages:
        assert list(json.loads(msg.value())) == list(FETCH_FIELDS)
        names = {name for name, _ in msg.headers() or []}
        assert not {n for n in names if n.startswith("x-sim")}


def test_sigterm_flushes_and_exits_zero(kafka: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory("user-login", partitions=2)
    env = {**os.environ, "LOG_FORMAT": "json", "BOOTSTRAP_SERVERS": kafka, "METRICS_PORT": "0"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "login_producer.cli", "--rate", "400", "--topic", topic, "--seed", "4"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        started = False
        while time.monotonic() < deadline and not started:
            line = proc.stderr.readline() if proc.stderr else ""
            started = "producer.start" in line
        assert started, "the producer did not start"
        time.sleep(2.0)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    stop = next(json.loads(ln) for ln in err.splitlines() if "producer.stop" in ln)
    assert stop["signalled"] is True
    assert stop["undelivered"] == 0
    assert stop["sent"] > 200
    assert len(drain(kafka, topic, expected=stop["sent"])) == stop["sent"]
