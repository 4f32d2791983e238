"""README "Observability": `make rules-check` (promtool check + unit tests of the alert rules) and
`make dashboards-check` (the committed dashboards are what the generator writes)."""

from __future__ import annotations

import pytest

from tests.readme.conftest import run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(900)]


@runs("make rules-check")
def test_rules_check_checks_and_unit_tests_the_alert_rules() -> None:
    ran = run("make rules-check", timeout=600)
    assert ran.returncode == 0, ran.tail()
    assert "SUCCESS" in ran.out  # promtool check rules: "SUCCESS: N rules found"
    assert "promtool test rules" in ran.stdout


@runs("make dashboards-check")
def test_dashboards_check_finds_the_committed_dashboards_current() -> None:
    ran = run("make dashboards-check", timeout=600)
    assert ran.returncode == 0, ran.tail()
