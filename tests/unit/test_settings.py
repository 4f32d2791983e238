"""Configuration: defaults, and start-up errors that name the setting."""

from __future__ import annotations

import subprocess
import sys

import pytest

from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_consumer.config import ConsumerSettings
from login_producer.config import ProducerSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("BOOTSTRAP_SERVERS", "INPUT_TOPIC", "OUTPUT_TOPIC", "DLQ_TOPIC", "METRICS_PORT", "GROUP_ID"):
        monkeypatch.delenv(var, raising=False)
    c = load_settings(ConsumerSettings)
    p = load_settings(ProducerSettings)
    assert c.bootstrap_servers == "127.0.0.1:9092"
    assert (c.input_topic, c.output_topic, c.dlq_topic) == (
        "user-login",
        "processed-logins",
        "user-login-dlq",
    )
    assert (c.metrics_port, p.metrics_port) == (8000, 8001)
    assert p.input_topic == "user-login"


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OUTPUT_TOPIC", "out-x")
    monkeypatch.setenv("metrics_port", "9100")
    s = load_settings(ConsumerSettings)
    assert s.output_topic == "out-x"
    assert s.metrics_port == 9100


@pytest.mark.parametrize(
    ("var", "value", "hint"),
    [
        ("METRICS_PORT", "eighty", "integer"),
        ("METRICS_PORT", "70000", "le=65535"),
        ("LOG_FORMAT", "xml", "json"),
        ("LOG_LEVEL", "LOUD", "DEBUG"),
        ("BATCH_SIZE", "0", "ge=1"),
        ("INPUT_TOPIC", "", "min_length=1"),
    ],
)
def test_bad_value_names_the_variable(
    monkeypatch: pytest.MonkeyPatch, var: str, value: str, hint: str
) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings(ConsumerSettings)
    message = str(info.value)
    assert f"{var}={value!r}" in message
    assert hint in message


def test_cli_exits_2_with_a_clear_message() -> None:
    env = {"METRICS_PORT": "abc", "PATH": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "login_consumer.cli"], env=env, capture_output=True, text=True, check=False
    )
    assert proc.returncode == 2
    assert "METRICS_PORT='abc'" in proc.stderr


@pytest.mark.parametrize("module", ["login_consumer.cli", "login_producer.cli"])
def test_help_documents_every_variable(module: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, check=True
    )
    for var in ("BOOTSTRAP_SERVERS", "INPUT_TOPIC", "METRICS_PORT", "LOG_FORMAT", "LOG_LEVEL"):
        assert var in proc.stdout
    if module == "login_consumer.cli":
        for var in ("OUTPUT_TOPIC", "DLQ_TOPIC", "GROUP_ID"):
            assert var in proc.stdout
