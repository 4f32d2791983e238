"""README "Tilt on the local node": `make tilt` (Tilt built once per user from its Go module; `make test`
built it before this runs, so here it is the cached path: the build itself is timed in docs/tilt.md) and
`make tilt-ci-node` (tilt ci on the node, the long README tier: it needs this clone's node with the
operators, `make k8s-node-up k8s-node-operators`; without it the test skips naming why, and fails under CI;
another clone's node is left alone: tests/operators/test_tilt_on_node.py uses it instead).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.readme.conftest import ROOT, only_long, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(3600)]
OWNER = Path("/run/login-stream-node/owner.json")


def tilt_path() -> str:
    return subprocess.run(
        ["bash", str(ROOT / "tools" / "tilt" / "build.sh"), "--print-path"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip


@runs("make tilt")
def test_tilt_builds_once_and_the_binary_runs() -> None:
    ran = run("make tilt", timeout=7200)
    assert ran.returncode == 0, ran.tail()
    tilt = tilt_path()
    version = subprocess.run([tilt, "version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("v0.34.0"), version.stdout


@only_long()
@runs("make tilt-ci-node")
def test_tilt_ci_on_this_clones_node() -> None:
    try:
        owner = json.loads(OWNER.read_text())
    except (OSError, ValueError):
        owner = None
    if not owner or Path(str(owner.get("root", ""))).resolve() != ROOT.resolve():
        reason = "no node runs" if not owner else f"another clone's node runs ({owner.get('root')})"
        if os.environ.get("CI"):
            pytest.fail(f"make tilt-ci-node needs this clone's node: {reason}")
        needs = "make tilt-ci-node needs this clone's node (make k8s-node-up k8s-node-operators)"
        pytest.skip(f"{needs}: {reason}")
    ran = run("make tilt-ci-node", timeout=3000)
    try:
        assert ran.returncode == 0, ran.tail()
        assert "SUCCESS. All workloads are healthy." in ran.out, ran.tail()
    finally:
        run("make tilt-down-node", timeout=600)
