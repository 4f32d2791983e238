"""The Tilt built here (`make tilt`, tools/tilt/build.sh; `make test` builds it first) runs the Tiltfile
for real, and what the node mode relies on in Tilt v0.34.0 is read from its module source (the build
downloads it into Go's module cache).

`make test` builds Tilt first within TILT_BUILD_BUDGET (mk/tilt.mk, as the control plane's build): when
the first build has not finished in it, these tests skip naming `make tilt` (the next run resumes from
Go's build cache); otherwise a missing binary or module source fails.

`tilt alpha tiltfile-result` executes the Tiltfile as `tilt up`/`tilt ci` do (helm template included)
and prints the resulting manifests, without a cluster: the node mode's custom builds, resources and
chart objects come out of the real interpreter, not of test_tiltfile.py's stubs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from tests.chart.conftest import ROOT, TOOLS_BIN, tool, unavailable
from tests.chart.test_tiltfile import SIGNATURES

VERSIONS = dict(
    line.split("=", 1) for line in (ROOT / "tools/tilt/versions").read_text().splitlines() if "=" in line
)
VERSION = VERSIONS["TILT_VERSION"]


@cache
def tilt() -> str:
    path = subprocess.run(
        ["bash", str(ROOT / "tools/tilt/build.sh"), "--print-path"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not os.access(path, os.X_OK):
        if Path(path).parent.is_dir():  # a build started and stopped at make test's budget
            pytest.skip(f"Tilt's first build has not finished yet ({path}): run `make tilt`")
        unavailable(f"Tilt is not built ({path}): run `make tilt`")
    return path


@cache
def module_source() -> Path:
    modcache = subprocess.run(["go", "env", "GOMODCACHE"], capture_output=True, text=True, check=True)
    source = Path(modcache.stdout.strip()) / f"github.com/tilt-dev/tilt@{VERSION}"
    if not source.is_dir():
        unavailable(f"Tilt's module source is not in Go's module cache ({source}): run `make tilt`")
    return source


def upstream(path: str) -> str:
    return (module_source() / path).read_text()


def tiltfile_result(tmp_path: Path, cluster: str) -> subprocess.CompletedProcess[str]:
    """The Tiltfile run by Tilt with LOGIN_STREAM_CLUSTER=cluster and a kubeconfig whose context is the
    node's (nothing answers there: tiltfile-result does not connect)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "none"}}],
                "contexts": [{"name": "login-stream-k8s-api", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "login-stream-k8s-api",
            }
        )
    )
    helm = Path(tool("helm")).parent
    env = {
        "PATH": f"{helm}{os.pathsep}{TOOLS_BIN}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kubeconfig),
        "LOGIN_STREAM_CLUSTER": cluster,
        "TILT_DISABLE_ANALYTICS": "1",
    }
    return subprocess.run(
        [tilt(), "alpha", "tiltfile-result", "--file", str(ROOT / "Tiltfile")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_the_binary_is_the_pinned_version_with_the_placeholder_page() -> None:
    version = subprocess.run([tilt(), "version"], capture_output=True, text=True, timeout=60, check=False)
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith(VERSION), version.stdout
    # the page tools/tilt/build.sh embeds where the web UI's index.html goes
    assert b"built from its Go module without the web UI" in Path(tilt()).read_bytes()


def test_real_tilt_runs_the_node_mode(tmp_path: Path) -> None:
    out = tiltfile_result(tmp_path, "node")
    assert out.returncode == 0, (
        f"tilt alpha tiltfile-result (node) exit {out.returncode}:\n{out.stderr[-3000:]}"
    )
    result: dict[str, Any] = json.loads(out.stdout)
    manifests = {m["Name"]: m for m in result["Manifests"]}
    assert {"kafka-ready", "prometheus", "login-stream-producer", "login-stream-consumer"} <= set(manifests)
    assert not {"grafana", "kafdrop"} & set(manifests), "the node runs neither"
    text = json.dumps(result)
    for service in ("producer", "consumer"):
        assert f"make --no-print-directory tilt-node-image TILT_SERVICE={service}" in text
        assert f"localhost/login-{service}" in text
    assert "live update: restarting" in text, "the restart loop is the containers' command"
    assert "kind-login-stream" not in text


def test_real_tilt_refuses_an_unknown_mode(tmp_path: Path) -> None:
    out = tiltfile_result(tmp_path, "minikube")
    assert out.returncode == 5, out.stderr  # tiltfile-result: "error when evaluating the Tiltfile"
    assert "LOGIN_STREAM_CLUSTER=minikube: use kind" in out.stderr


# --- Tilt v0.34.0, what the node mode relies on ---------------------------------------------------------


def function(source: str, signature: str) -> str:
    start = source.index(signature)
    return source[start : source.index("\n}\n", start)]


def test_custom_build_parameters_are_the_stubs() -> None:
    """internal/tiltfile/docker.go customBuild's unpackArgs: the names test_tiltfile.py's stub accepts."""
    body = function(upstream("internal/tiltfile/docker.go"), "func (s *tiltfileState) customBuild(")
    unpacked = re.findall(r'^\s*"(\w+)\??", &', body, re.MULTILINE)
    assert unpacked == SIGNATURES["custom_build"]


def test_custom_build_sets_expected_ref_and_skips_docker_when_told() -> None:
    """internal/build/custom_builder.go: the command gets EXPECTED_REF; with skips_local_docker the
    reference is returned before any Docker lookup; internal/tiltfile/tiltfile_state.go maps
    skips_local_docker to that output mode."""
    build = function(upstream("internal/build/custom_builder.go"), "func (b *CustomBuilder) Build(")
    assert 'fmt.Sprintf("EXPECTED_REF=%s", container.FamiliarString(expectedBuildResult))' in build
    remote = build.index(
        "if spec.OutputMode == v1alpha1.CmdImageOutputRemote {\n\t\treturn expectedBuildRefs, nil"
    )
    assert remote < build.index("b.dCli.ImageInspectWithRaw(")
    state = upstream("internal/tiltfile/tiltfile_state.go")
    assert "if image.skipsLocalDocker {\n\t\t\t\tspec.OutputMode = v1alpha1.CmdImageOutputRemote" in state


def test_deployed_images_are_pulled_only_if_not_present() -> None:
    """internal/controllers/core/kubernetesapply/reconciler.go: Tilt's images go out IfNotPresent, so the
    kubelet runs the imported image instead of pulling it."""
    reconciler = upstream("internal/controllers/core/kubernetesapply/reconciler.go")
    assert "k8s.InjectImagePullPolicy(e, v1.PullIfNotPresent)" in reconciler


def test_load_dynamic_loads_extensions_like_load() -> None:
    """internal/tiltfile/loaddynamic/load.go: load_dynamic() goes through the thread's loader (the
    ext:// one included) and returns the module's symbols as a dict."""
    load = upstream("internal/tiltfile/loaddynamic/load.go")
    assert 'e.AddBuiltin("load_dynamic", loadDynamic)' in load
    assert "module, err := t.Load(t, p.Value)" in load
    assert "dict.SetKey(starlark.String(key), val)" in load


def test_the_web_ui_needs_an_embedded_index_and_tilt_ci_says_success() -> None:
    """pkg/assets/embedded.go serves build/index.html when embedded (the module holds only robots.txt
    there); internal/cli/up.go refuses a versioned build without it; cmd/tilt/main.go reads the version
    from main.version; internal/cli/ci.go's success line is what the operators tier checks."""
    assert 'build.ReadFile("build/index.html")' in upstream("pkg/assets/embedded.go")
    assert not (module_source() / "pkg/assets/build/index.html").exists(), "the module now carries the UI"
    assert "running in prod mode, but JS/CSS files are not available" in upstream("internal/cli/up.go")
    main = upstream("cmd/tilt/main.go")
    assert "var version string" in main
    assert "Version: version," in main
    assert "SUCCESS. All workloads are healthy." in upstream("internal/cli/ci.go")


def test_the_module_in_the_cache_is_the_one_pinned() -> None:
    """tools/tilt/versions' h1: hash (the checksum database has no record of the module) is that of the
    module Go's cache holds, which the build used."""
    module_source()
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/tilt-dev/tilt@{VERSION}"],
        cwd="/", capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "GONOSUMDB": "github.com/tilt-dev/tilt", "GOFLAGS": "-mod=mod"},
    )  # fmt: skip
    assert json.loads(info.stdout)["Sum"] == VERSIONS["TILT_MODULE_SUM"], info.stdout
    assert "docs/tilt.md" in (ROOT / "tools/tilt/index.html").read_text()
