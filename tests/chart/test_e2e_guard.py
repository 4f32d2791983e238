"""`make e2e` without a reachable cluster stops with a clear reason and a non-zero exit, and runs nothing."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.chart.conftest import ROOT

UNREACHABLE = """\
apiVersion: v1
kind: Config
clusters:
  - name: nowhere
    cluster: {server: "https://127.0.0.1:1"}
contexts:
  - name: nowhere
    context: {cluster: nowhere, user: nobody}
current-context: nowhere
users:
  - name: nobody
    user: {token: not-a-token}
"""


def make_e2e(kubeconfig: Path, context: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "E2E_"))}
    env["KUBECONFIG"] = str(kubeconfig)
    if context:
        env["E2E_CONTEXT"] = context
    env.pop("MAKEFLAGS", None)
    return subprocess.run(
        ["make", "--no-print-directory", "e2e"],
        cwd=ROOT,
        env=env,
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("case", ["missing-kubeconfig", "unreachable-api-server"])
def test_make_e2e_without_a_cluster_fails_with_the_reason(tmp_path: Path, case: str) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    if case == "unreachable-api-server":
        kubeconfig.write_text(UNREACHABLE)
    out = make_e2e(kubeconfig, context="nowhere")
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "make e2e needs a reachable Kubernetes cluster and found none" in text
    reason = "no usable kubeconfig" if case == "missing-kubeconfig" else "https://127.0.0.1:1 does not answer"
    assert reason in text
    assert " passed" not in text
    assert "PASSED" not in text


def test_make_e2e_pins_the_kind_context(tmp_path: Path) -> None:
    """Like every other k8s target, `make e2e` talks to kind-login-stream, not whatever context is current
    (here "nowhere", which it must not even try)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(UNREACHABLE)
    out = make_e2e(kubeconfig)
    text = out.stdout + out.stderr
    assert out.returncode != 0, text
    assert "kind-login-stream" in text
    assert "127.0.0.1:1" not in text


def test_the_e2e_suite_collects() -> None:
    out = subprocess.run(
        [str(ROOT / ".venv/bin/pytest"), "tests/e2e", "--collect-only", "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    collected = [ln for ln in out.stdout.splitlines() if "::test_" in ln]
    names = " ".join(collected)
    for name in (
        "test_kafka_is_ready",
        "test_deployment_is_available",
        "test_events_flow_through_the_pipeline",
        "test_service_monitor_targets_are_up",
        "test_app_and_kafka_metrics_are_in_prometheus",
        "test_scaling_the_consumer_from_one_to_three_loses_no_event",
    ):
        assert name in names
