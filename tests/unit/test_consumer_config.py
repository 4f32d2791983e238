"""Consumer settings: defaults, the client configurations they build, errors naming the variable."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings


def test_defaults_are_at_least_once_with_idempotent_acks_all() -> None:
    settings = load_settings(ConsumerSettings)
    assert settings.processing_guarantee == "at-least-once"
    assert not settings.exactly_once
    producer = settings.producer_config()
    assert producer["enable.idempotence"] is True
    assert producer["acks"] == "all"
    assert "transactional.id" not in producer
    consumer = settings.consumer_config()
    assert consumer["enable.auto.commit"] is False
    assert consumer["enable.auto.offset.store"] is False
    assert consumer["heartbeat.interval.ms"] * 3 <= consumer["session.timeout.ms"]
    assert settings.timestamp_max_age_seconds == 30 * 86_400
    assert settings.timestamp_max_ahead_seconds == 300


def test_exactly_once_uses_a_stable_transactional_id() -> None:
    settings = load_settings(ConsumerSettings, processing_guarantee="exactly-once", group_id="g")
    assert settings.producer_config()["transactional.id"] == f"g-{socket.gethostname()}"
    named = load_settings(ConsumerSettings, processing_guarantee="exactly-once", transactional_id="pod-0")
    assert named.producer_config()["transactional.id"] == "pod-0"
    assert named.consumer_config()["isolation.level"] == "read_committed"


def test_the_poll_interval_outlasts_every_wait_of_the_loop_on_kafka() -> None:
    """Between two reads the loop may wait on Kafka WAITS_PER_READ x DELIVERY_TIMEOUT (a full queue, a
    commit's retries, an abort): max.poll.interval.ms is never shorter, or the group would drop the member
    while it waits (a two-broker outage did that: the output stopped for good)."""
    assert load_settings(ConsumerSettings).consumer_config()["max.poll.interval.ms"] == 300_000
    slow = load_settings(ConsumerSettings, delivery_timeout=120)
    assert slow.consumer_config()["max.poll.interval.ms"] == 4 * 120_000
    tight = load_settings(
        ConsumerSettings, delivery_timeout=10, session_timeout_ms=10_000, max_poll_interval_ms=40_000
    )
    assert tight.consumer_config()["max.poll.interval.ms"] == 40_000
    with pytest.raises(ConfigError, match="MAX_POLL_INTERVAL_MS"):
        load_settings(ConsumerSettings, delivery_timeout=10, max_poll_interval_ms=39_999)
    with pytest.raises(ConfigError, match="MAX_POLL_INTERVAL_MS"):
        load_settings(
            ConsumerSettings, delivery_timeout=1, session_timeout_ms=45_000, max_poll_interval_ms=30_000
        )


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PROCESSING_GUARANTEE", "twice"),
        ("MIN_APP_VERSION", "not-a-version"),
        ("RISK_WEIGHTS", "night_login=abc"),
        ("BATCH_SIZE", "0"),
        ("SESSION_TIMEOUT_MS", "100"),
        ("MAX_EVENT_BYTES", "1"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, variable: str, value: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError, match=variable):
        load_settings(ConsumerSettings)


def test_cli_exits_2_on_bad_config() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "login_consumer"],
        env={"PROCESSING_GUARANTEE": "maybe", "PATH": ""},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "PROCESSING_GUARANTEE" in out.stderr


def test_help_lists_replay_dlq_and_the_variables() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "login_consumer", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "replay-dlq" in out.stdout
    assert "PROCESSING_GUARANTEE" in out.stdout
    assert "RISK_WEIGHTS" in out.stdout
