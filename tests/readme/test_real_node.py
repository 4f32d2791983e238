"""README "Kubernetes: a real node on this machine": `make k8s-node-up` brings a Ready node with DNS,
`make k8s-node-status` reports it, and `make k8s-node-down` leaves nothing behind on the machine (no
process, bridge, iptables chain, kubepods cgroup or owner record), so that a second `up` (the real-node
tier's, which runs after this one) starts clean. Where the machine cannot host a node (not root), the
commands refuse with the documented reason. A node already running (a developer's) is left alone.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.readme.conftest import run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(3600)]
OWNER = Path("/run/login-stream-node/owner.json")


def _iptables_mentions_ours() -> bool:
    dump = subprocess.run(["iptables-save"], capture_output=True, text=True, check=False).stdout
    return "KUBE-" in dump or "CNI-" in dump


def _node_running() -> bool:
    """A node runs when its owner record names a live kubelet (a stale record, left by a machine that
    stopped without `make k8s-node-down`, is `up`'s to clear)."""
    if not OWNER.exists():
        return False
    pid = json.loads(OWNER.read_text()).get("kubelet_pid")
    return bool(pid) and Path(f"/proc/{pid}").exists()


@runs("make k8s-node-up", "make k8s-node-status", "make k8s-node-down")
def test_real_node_up_status_down_leaves_the_machine_as_it_was() -> None:
    if os.geteuid() != 0:
        ran = run("make k8s-node-up", timeout=600)
        assert ran.returncode != 0, ran.tail()
        assert "run as root" in ran.out, ran.tail()
        assert "Traceback" not in ran.out
        return
    if _node_running():
        if os.environ.get("CI"):
            pytest.fail(f"a node already runs on the CI machine ({OWNER.read_text().strip()})")
        pytest.skip("a real node already runs on this machine: `make k8s-node-down` first to run this test")
    up = run("make k8s-node-up", timeout=3000)
    try:
        assert up.returncode == 0, up.tail()
        assert "Ready, DNS and storage in place" in up.out, up.tail()
        status = run("make k8s-node-status")
        assert "node login-stream-node: Ready" in status.out, status.tail()
        assert "DNS ready" in status.out, status.tail()
    finally:
        down = run("make k8s-node-down", timeout=600)
    assert down.returncode == 0, down.tail()
    assert "sysctls restored" in down.out, down.tail()
    assert not OWNER.exists()
    links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True, check=False).stdout
    assert "lsnode0" not in links
    assert "lspods0" not in links
    assert not _iptables_mentions_ours()
    assert not any(Path("/sys/fs/cgroup").glob("*/kubepods"))
    after = run("make k8s-node-status")
    assert "kubelet      stopped" in after.out, after.tail()
