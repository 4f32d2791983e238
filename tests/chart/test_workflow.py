"""The GitHub Actions workflow: actionlint-clean (with shellcheck on its run: scripts), and
made of the make targets a person runs."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from tests.chart.conftest import ROOT, tool, unavailable

WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))


def test_actionlint() -> None:
    actionlint = tool("actionlint")
    if shutil.which("shellcheck") is None:
        unavailable(
            "shellcheck not installed: actionlint would skip the run: scripts (apt-get install shellcheck)"
        )
    assert WORKFLOWS
    out = subprocess.run(
        [actionlint, "-no-color", *map(str, WORKFLOWS)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_workflow_runs_what_a_person_runs() -> None:
    (workflow,) = WORKFLOWS
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    runs = {name: " ; ".join(s.get("run", "") for s in job["steps"]) for name, job in jobs.items()}
    assert "bash .ci/run" in runs["test"]  # lint + make test, as CI here
    assert "make images" in runs["images"]
    e2e = runs["e2e"]
    for command in ("make images", "make cluster", "make deploy", "make e2e", "make helm-test"):
        assert command in e2e
    assert e2e.index("make cluster") < e2e.index("make deploy") < e2e.index("make e2e")
    assert set(jobs["e2e"]["needs"]) == {"test", "images"}
