"""The control plane's versions are pinned in one place (tools/k8s/versions) and the Go modules that build
it agree with it: k8s.io/kubernetes and every k8s.io staging module it needs at the matching release."""

from __future__ import annotations

import re
from pathlib import Path

from tests.k8s_api.conftest import ROOT, load_control_plane_script

TOOLS = ROOT / "tools" / "k8s"


def requires(go_mod: Path) -> dict[str, str]:
    """module -> version of every require line (single or in a block)."""
    text = go_mod.read_text()
    found = dict(re.findall(r"^\s*(?:require\s+)?([\w.\-/]+)\s+(v[\w.\-+]+)(?:\s*//.*)?$", text, flags=re.M))
    return {m: v for m, v in found.items() if "." in m.split("/")[0]}


def replaces(go_mod: Path) -> dict[str, str]:
    return dict(re.findall(r"^\s*([\w.\-/]+)\s*=>\s*\1\s+(v[\w.\-+]+)\s*$", go_mod.read_text(), flags=re.M))


def test_versions_file_pins_every_component() -> None:
    versions = load_control_plane_script().versions()
    assert set(versions) == {"KUBERNETES_VERSION", "ETCD_VERSION", "KWOK_VERSION"}
    for value in versions.values():
        assert re.fullmatch(r"v\d+\.\d+\.\d+", value), value


def test_kube_module_requires_the_pinned_kubernetes_and_its_staging_releases() -> None:
    kube = load_control_plane_script().versions()["KUBERNETES_VERSION"]
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
    etcd = load_control_plane_script().versions()["ETCD_VERSION"]
    assert requires(TOOLS / "etcd" / "go.mod")["go.etcd.io/etcd/server/v3"] == etcd


def test_build_script_installs_the_pinned_kwok() -> None:
    script = (TOOLS / "build.sh").read_text()
    assert "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" in script
    assert 'source "$here/versions"' in script
