"""The control plane's versions are pinned in one place (tools/k8s/versions) and the Go modules that build
it agree with it: k8s.io/kubernetes and every k8s.io staging module it needs at the matching release.
login_devtools/k8s_api.py without a running control plane: status, bad settings, down."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from login_devtools import k8s_api
from tests.control_plane.conftest import ROOT

TOOLS = ROOT / "tools" / "k8s"


def requires(go_mod: Path) -> dict[str, str]:
    """module -> version of every require line (single or in a block)."""
    text = go_mod.read_text()
    found = dict(re.findall(r"^\s*(?:require\s+)?([\w.\-/]+)\s+(v[\w.\-+]+)(?:\s*//.*)?$", text, flags=re.M))
    return {m: v for m, v in found.items() if "." in m.split("/")[0]}


def replaces(go_mod: Path) -> dict[str, str]:
    return dict(re.findall(r"^\s*([\w.\-/]+)\s*=>\s*\1\s+(v[\w.\-+]+)\s*$", go_mod.read_text(), flags=re.M))


def test_versions_file_pins_every_component() -> None:
    versions = k8s_api.versions()
    assert set(versions) == {
        "KUBERNETES_VERSION",
        "ETCD_VERSION",
        "KWOK_VERSION",
        "PAUSE_VERSION",  # the node's sandbox image (tools/k8s/build.sh: pause.c of the pinned module)
        "COREDNS_VERSION",  # the node's cluster DNS (k8s/node/coredns.yaml)
    }
    for key, value in versions.items():
        pattern = r"\d+\.\d+\.\d+" if key == "PAUSE_VERSION" else r"v\d+\.\d+\.\d+"
        assert re.fullmatch(pattern, value), (key, value)


def test_kube_module_requires_the_pinned_kubernetes_and_its_staging_releases() -> None:
    kube = k8s_api.versions()["KUBERNETES_VERSION"]
    staging = "v0." + kube.removeprefix("v1.")  # k8s.io/kubernetes v1.N.P <-> staging modules v0.N.P
    go_mod = TOOLS / "kube" / "go.mod"
    assert requires(go_mod)["k8s.io/kubernetes"] == kube
    replaced = replaces(go_mod)
    assert replaced, "no staging module is replaced"
    assert set(replaced.values()) == {staging}
    for module, version in requires(go_mod).items():
        if module.startswith("k8s.io/") and version in ("v0.0.0", staging):
            assert module in replaced, f"{module} {version}: a staging module without a replace line"


def test_etcd_module_requires_the_pinned_etcd() -> None:
    etcd = k8s_api.versions()["ETCD_VERSION"]
    assert requires(TOOLS / "etcd" / "go.mod")["go.etcd.io/etcd/server/v3"] == etcd


def test_build_script_installs_the_pinned_kwok() -> None:
    script = (TOOLS / "build.sh").read_text()
    assert "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" in script
    assert 'source "$here/versions"' in script


def run_script(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("K8S_API", "KAFKA_PORT"))}
    environ |= {"K8S_API_DIR": str(tmp_path / "state"), **env}
    return subprocess.run(
        [sys.executable, "-m", "login_devtools.k8s_api", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_status_of_a_stopped_control_plane_names_every_process_and_its_log(tmp_path: Path) -> None:
    out = run_script(tmp_path, "status", KAFKA_PORT="30000")
    assert out.returncode == 1
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"):
        line = next(x for x in out.stdout.splitlines() if x.split()[:1] == [name])
        assert "stopped" in line
        assert str(tmp_path / "state" / "logs" / f"{name}.log") in line
    assert "https://127.0.0.1:30010" in out.stdout  # K8S_API_PORT defaults to KAFKA_PORT + 10


@pytest.mark.parametrize(
    ("setting", "value"), [("K8S_API_NODES", "-1"), ("K8S_API_NODES", "many"), ("K8S_API_PORT", "70000")]
)
def test_up_with_a_bad_setting_fails_naming_it(tmp_path: Path, setting: str, value: str) -> None:
    out = run_script(tmp_path, "up", **{setting: value})
    assert out.returncode == 1
    assert f"{setting}={value!r}" in out.stderr
    assert not (tmp_path / "state" / "pki").exists()  # nothing was built or started


def test_down_without_a_control_plane_is_a_no_op(tmp_path: Path) -> None:
    out = run_script(tmp_path, "down", "--purge")
    assert out.returncode == 0, out.stderr
