"""README "Observability": `make rules-check` (promtool check + unit tests of the alert rules),
`make dashboards-check` (the committed dashboards are what the generator writes) and `make jaeger` (the
trace backend, built once per user; `make test` built it before this runs, so here it is the cached
path: the build itself is timed in docs/observability.md)."""

from __future__ import annotations

import subprocess

import pytest

from tests.readme.conftest import ROOT, run
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


@runs("make jaeger")
def test_jaeger_builds_once_and_the_binary_runs() -> None:
    ran = run("make jaeger", timeout=3600)
    assert ran.returncode == 0, ran.tail()
    path = subprocess.run(
        ["bash", str(ROOT / "tools" / "jaeger" / "build.sh"), "--print-path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    version = subprocess.run([path, "version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert "v2.13.0" in version.stdout + version.stderr
