"""Alert rules: promtool check and unit tests, annotations, runbooks, firing and not-firing coverage."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "rules" / "login-stream.rules.yaml"
TESTS = sorted((ROOT / "monitoring" / "tests").glob("*.test.yaml"))
RUNBOOKS = ROOT / "docs" / "runbooks.md"
REQUIRED_ALERTS = {
    "LoginStreamConsumerLagHigh",
    "LoginStreamDLQRateHigh",
    "LoginStreamConsumerErrors",
    "LoginStreamNoThroughput",
    "LoginStreamHighRiskSpike",
    "LoginStreamTargetDown",
}


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if not found:
        pytest.fail("promtool not found: install Debian's `prometheus` package")
    return found


def alerts() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert set(doc) == {"groups"}, "plain rule-file format: only `groups:` at the top"
    return [r for g in doc["groups"] for r in g["rules"] if "alert" in r]


def test_promtool_check_rules() -> None:
    out = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_promtool_unit_tests_pass() -> None:
    assert TESTS, "no promtool unit tests in monitoring/tests/"
    out = subprocess.run(
        [promtool(), "test", "rules", *map(str, TESTS)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_required_alerts_exist() -> None:
    assert {a["alert"] for a in alerts()} >= REQUIRED_ALERTS


def test_every_alert_has_severity_summary_description_and_runbook() -> None:
    runbooks = RUNBOOKS.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", h.strip().lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", runbooks, re.MULTILINE)
    }
    for alert in alerts():
        name = alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}, name
        notes = alert["annotations"]
        assert notes.get("summary"), name
        assert notes.get("description"), name
        url = notes.get("runbook_url", "")
        assert url == f"docs/runbooks.md#{name.lower()}", f"{name}: runbook_url {url!r}"
        assert name.lower() in anchors, f"{name}: no `## {name}` section in docs/runbooks.md"


def test_every_alert_is_unit_tested_firing_and_not_firing() -> None:
    firing: set[str] = set()
    silent: set[str] = set()
    for path in TESTS:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        for case in doc["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
    names = {a["alert"] for a in alerts()}
    assert names - firing == set(), "alerts never tested firing"
    assert names - silent == set(), "alerts never tested not firing"


def test_unit_tests_can_fail(tmp_path: Path) -> None:
    """A rule file whose thresholds no longer match makes `promtool test rules` fail."""
    broken = RULES.read_text(encoding="utf-8").replace("> 10000", "> 1000000")
    assert broken != RULES.read_text(encoding="utf-8")
    (tmp_path / "rules").mkdir()
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules" / RULES.name).write_text(broken, encoding="utf-8")
    for path in TESTS:
        (tmp_path / "tests" / path.name).write_text(path.read_text(encoding="utf-8"), encoding="utf-8")
    out = subprocess.run(
        [promtool(), "test", "rules", *(str(tmp_path / "tests" / p.name) for p in TESTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode != 0
    assert "LoginStreamConsumerLagHigh" in out.stdout + out.stderr
