"""The producer's command line in file mode: formats, determinism, settings, metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from login_common.contract import DETECTORS, FETCH_FIELDS
from login_common.errors import ConfigError
from login_common.settings import load_settings
from login_producer.cli import build_parser, main, run
from login_producer.config import ProducerSettings
from login_producer.simulate import SCENARIOS

ARGS = ["--rate", "0", "--count", "4000", "--users", "700"]


def produce(tmp_path: Path, name: str, *extra: str) -> bytes:
    out = tmp_path / name
    assert main([*ARGS, *extra, "--out", str(out)]) == 0
    return out.read_bytes()


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    a = produce(tmp_path, "a.jsonl", "--seed", "5")
    b = produce(tmp_path, "b.jsonl", "--seed", "5")
    c = produce(tmp_path, "c.jsonl", "--seed", "6")
    assert a == b
    assert a != c
    assert a.count(b"\n") == 4000


def test_full_format_carries_labels_beside_the_event(tmp_path: Path) -> None:
    lines = [json.loads(x) for x in produce(tmp_path, "full.jsonl", "--seed", "1").splitlines()]
    scenarios = set()
    for rec in lines:
        label = rec.pop("_label")
        assert set(label) == {"scenario", "attack_id", "truth", "country"}
        assert label["scenario"] in SCENARIOS
        assert set(label["truth"]) <= set(DETECTORS)
        assert (label["attack_id"] is None) == (
            label["scenario"]
            not in {"brute_force", "credential_stuffing", "impossible_travel", "account_takeover"}
        )
        assert set(rec) == {*FETCH_FIELDS, "event_id", "outcome", "auth_method", "user_agent"}
        assert isinstance(rec["timestamp"], int)
        scenarios.add(label["scenario"])
    assert {"benign", "brute_force", "credential_stuffing"} <= scenarios


def test_fetch_format_is_exactly_seven_fields(tmp_path: Path) -> None:
    data = produce(tmp_path, "fetch.jsonl", "--seed", "1", "--format", "fetch")
    full = produce(tmp_path, "full.jsonl", "--seed", "1")
    for line, full_line in zip(data.splitlines(), full.splitlines(), strict=True):
        rec = json.loads(line)
        assert list(rec) == list(FETCH_FIELDS)
        assert isinstance(rec["timestamp"], str)
        whole = json.loads(full_line)
        assert rec == {k: str(whole[k]) if k == "timestamp" else whole[k] for k in FETCH_FIELDS}
    assert b"_label" not in data
    assert b"x-sim" not in data


def test_scenario_flags_and_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CREDENTIAL_STUFFING_RATIO", "0")
    monkeypatch.setenv("TRUTH_BRUTE_FORCE_FAILURES", "9")
    settings = load_settings(ProducerSettings, brute_force_ratio=0.2)
    assert settings.scenario_mix().credential_stuffing == 0
    assert settings.scenario_mix().brute_force == 0.2
    assert settings.truth_rules().brute_force_failures == 9
    data = produce(tmp_path, "mix.jsonl", "--brute-force-ratio", "0.3", "--truth-brute-force-failures", "4")
    labels = [json.loads(x)["_label"] for x in data.splitlines()]
    assert not any(lb["scenario"] == "credential_stuffing" for lb in labels)
    assert sum(lb["scenario"] == "brute_force" for lb in labels) > 0.15 * len(labels)


def test_bad_mix_fails_at_start_naming_the_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*ARGS, "--brute-force-ratio", "0.5", "--forgetful-ratio", "0.45", "--out", "-"]) == 2
    err = capsys.readouterr().err
    assert "FORGETFUL_RATIO" in err
    assert "BRUTE_FORCE_RATIO" in err
    with pytest.raises(ConfigError, match="USERS"):
        load_settings(ProducerSettings, users=2_000_000)
    with pytest.raises(ConfigError, match="TRUTH_STUFFING_PREFIX"):
        load_settings(ProducerSettings, truth_stuffing_prefix=16)


def test_help_documents_flags_and_environment() -> None:
    text = build_parser().format_help()
    for needle in (
        "--rate",
        "--count",
        "--duration",
        "--seed",
        "--users",
        "--out",
        "--format",
        "--account-takeover-ratio",
        "ACCOUNT_TAKEOVER_RATIO",
        "TRUTH_TRAVEL_MAX_SPEED_KMH",
        "LOGINS_PER_USER_DAY",
        "--office-share",
    ):
        assert needle in text


def test_file_mode_counts_events_by_scenario(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    settings = load_settings(ProducerSettings, rate=0, count=3000, users=500, seed=3)
    assert run(settings, out=str(tmp_path / "m.jsonl"), registry=registry) == 0
    total = sum(
        registry.get_sample_value("login_producer_events_sent_total", {"scenario": s}) or 0 for s in SCENARIOS
    )
    assert total == 3000
    assert registry.get_sample_value("login_producer_events_delivered_total") == 3000
    assert registry.get_sample_value("login_producer_events_sent_total", {"scenario": "brute_force"})


def _producer_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    entry = str(Path(sys.executable).parent / "login-producer")
    full_env = {**os.environ, "LOG_FORMAT": "json", "BOOTSTRAP_SERVERS": "127.0.0.1:1", **env}
    return subprocess.run(
        [entry, "--count", "5", *args], env=full_env, capture_output=True, text=True, timeout=60, check=False
    )


@pytest.mark.parametrize(
    ("case", "named"),
    [
        ("invalid topic name", "INPUT_TOPIC='bad topic!'"),
        ("a CA file that is no certificate", "ssl.ca.location failed"),
        ("a metrics port taken", "cannot listen"),
    ],
)
def test_settings_that_can_never_work_exit_2_with_one_line(case: str, named: str, tmp_path: Path) -> None:
    """Only what no grant or broker-side fix can heal stops the producer: exit 2, one line, no traceback
    (refusals by the broker are waited out instead: tests/integration/test_producer_access.py)."""
    args: list[str] = ["--metrics-port", "0"]
    env: dict[str, str] = {}
    taken = socket.socket()
    try:
        if case == "invalid topic name":
            args += ["--topic", "bad topic!"]
        elif case == "a CA file that is no certificate":
            bad = tmp_path / "ca.crt"
            bad.write_text("not a certificate\n")
            env = {"SECURITY_PROTOCOL": "SSL", "SSL_CA_LOCATION": str(bad)}
        else:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            args = ["--metrics-port", str(taken.getsockname()[1])]
        done = _producer_process(env, *args)
    finally:
        taken.close()
    assert done.returncode == 2, done.stderr
    lines = [line for line in (done.stdout + done.stderr).splitlines() if named in line]
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [
        line for line in done.stderr.splitlines() if '"level": "error"' in line or "login-producer:" in line
    ]
    assert errors == lines
