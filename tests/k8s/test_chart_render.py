"""helm lint, and every rendered object of every ci/*-values.yaml (and of the kind values) schema-valid."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.k8s.conftest import CHART, ROOT, Render, schema_problems
from tests.k8s.kube_schemas import Obj, Validator

CI_VALUES = sorted(p.name for p in (CHART / "ci").glob("*-values.yaml"))
# The values the repository deploys with: `make deploy` (kind) and Tilt (kind + dev overrides).
DEPLOY_VALUES = {
    "kind": (ROOT / "k8s/values/login-stream.yaml",),
    "tilt": (ROOT / "k8s/values/login-stream.yaml", ROOT / "k8s/values/tilt.yaml"),
}


def test_there_are_ci_values() -> None:
    assert {"default-values.yaml", "full-values.yaml", "minimal-values.yaml"} <= set(CI_VALUES)


@pytest.mark.parametrize("values", ["", *CI_VALUES])
def test_helm_lint(helm: str, values: str) -> None:
    cmd = [helm, "lint", str(CHART), "--strict"] + (
        ["--values", str(CHART / "ci" / values)] if values else []
    )
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout


def _check(objs: list[Obj], validator: Validator) -> None:
    assert objs, "nothing rendered"
    problems = schema_problems(objs, validator)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("values", CI_VALUES)
def test_ci_values_render_valid_objects(render: Render, validator: Validator, values: str) -> None:
    _check(render(f"ci/{values}"), validator)


@pytest.mark.parametrize("name", sorted(DEPLOY_VALUES))
def test_deploy_values_render_valid_objects(render: Render, validator: Validator, name: str) -> None:
    files: tuple[Path, ...] = DEPLOY_VALUES[name]
    _check(render(*files), validator)


def test_every_kind_the_chart_can_render_is_covered(render: Render) -> None:
    kinds = {o["kind"] for o in render("ci/full-values.yaml")}
    assert kinds >= {
        "Deployment",
        "Service",
        "ServiceAccount",
        "ConfigMap",
        "Pod",
        "PodDisruptionBudget",
        "NetworkPolicy",
        "ServiceMonitor",
        "PrometheusRule",
        "AlertmanagerConfig",
        "ScaledObject",
    }
