"""README "Operators on the local node": `make operators-build` finds every part built (cached),
`make operators-images-import` packs and imports the operators' images, `make k8s-node-operators` brings
Strimzi, prometheus-operator + Prometheus and KEDA up with Kafka and its topics Ready, `make k8s-node-deploy`
installs the chart against that Kafka and `make e2e-node` passes there.

The cold build takes hours on two shared cores, so it runs only in the long README tier (README_LONG=1,
`make test-readme-long`); there, without the built parts (or without root) the test skips naming why, and
fails under CI. It uses this clone's node when it runs
(`make k8s-node-up`), starts one when none does and stops what it started; another clone's node is left
alone (skipped: one kubelet per machine).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.operators.parts import missing_parts
from tests.readme.conftest import ROOT, only_long, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(7200)]
OWNER = Path("/run/login-stream-node/owner.json")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _our_node() -> bool | None:
    """True: this clone's node runs; False: none runs; None: another clone's does."""
    if not OWNER.exists():
        return False
    record = json.loads(OWNER.read_text() or "{}")
    return True if Path(str(record.get("root", ""))).resolve() == ROOT.resolve() else None


@only_long()
@runs(
    "make operators-build",
    "make operators-images-import",
    "make k8s-node-operators",
    "make k8s-node-deploy",
    "make e2e-node",
)
def test_operators_reconcile_on_the_node_and_make_e2e_passes_there() -> None:
    if os.geteuid() != 0:
        _unavailable("the operators' tier needs root (the real node)")
    if missing := missing_parts():
        _unavailable(f"not built yet ({', '.join(missing)}): `make operators-build` (hours cold)")
    built = run("make operators-build", timeout=1200)
    assert built.returncode == 0, built.tail()
    assert "cached" in built.out, built.tail()
    ours = _our_node()
    if ours is None:
        _unavailable(f"another clone's node runs on this machine ({OWNER.read_text().strip()})")
    started = not ours
    if started:
        up = run("make k8s-node-up", timeout=3000)
        assert up.returncode == 0, up.tail()
    try:
        for command, timeout, promise in (
            ("make operators-images-import", 3600, "imported"),
            ("make images-import", 3600, "imported"),
            ("make k8s-node-operators", 3600, "condition met"),
            ("make k8s-node-deploy", 1200, "STATUS: deployed"),
            ("make e2e-node", 3600, " passed"),
        ):
            ran = run(command, timeout=timeout)
            assert ran.returncode == 0, ran.tail()
            assert promise in ran.out, ran.tail()
            assert "Traceback" not in ran.out, ran.tail()
    finally:
        if started:
            run("make k8s-node-down", timeout=600)
