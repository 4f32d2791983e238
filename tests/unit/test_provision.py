"""login_devtools/provision.py (`make setup`, `make tools`): tools on PATH are used when supported, only what
is missing is built, and whatever cannot be had is named in one message with its install command, before
any test runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = [sys.executable, "-m", "login_devtools.provision"]


def stub(bindir: Path, name: str, output: str) -> Path:
    """An executable ``name`` that prints ``output`` whatever it is asked (a tool's version line)."""
    path = bindir / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


def run(tmp_path: Path, *args: str, extra_path: str = "") -> subprocess.CompletedProcess[str]:
    """provision.py with PATH = tmp_path/bin (+ extra_path) and an empty .cache/bin of its own."""
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    env = {
        "PATH": os.pathsep.join(p for p in (str(bindir), extra_path) if p),
        "TOOLS_BIN": str(tmp_path / "tools-bin"),
        "CRD_DIR": str(tmp_path / "crds"),
        "HOME": str(tmp_path),
    }
    return subprocess.run([*SCRIPT, *args], capture_output=True, text=True, env=env, check=False, timeout=60)


def test_supported_tools_on_path_are_used_and_nothing_is_built(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helm = stub(bindir, "helm", "v3.15.2")
    kind = stub(bindir, "kind", "kind v0.29.0 go1.24.2 linux/amd64")
    kubectl = stub(bindir, "kubectl", "Client Version: v1.33.1")
    out = run(tmp_path, "tools", "helm", "kind", "kubectl")
    assert out.returncode == 0, out.stderr
    assert f"helm: using {helm} v3.15.2 (on PATH; supported >= v3.14.0, < v4.0.0)" in out.stdout
    assert f"kind: using {kind} v0.29.0 (on PATH" in out.stdout
    assert f"kubectl: using {kubectl} v1.33.1 (on PATH" in out.stdout
    assert "go install" not in out.stdout
    assert not (tmp_path / "tools-bin").exists()


def test_unsupported_or_missing_tools_without_go_are_named_with_how_to_install(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    old = stub(bindir, "helm", "v2.17.0+ga690bad")
    out = run(tmp_path, "tools", "helm", "kubeconform", "kubectl")
    assert out.returncode == 2
    assert out.stdout.count("using") == 0
    message = out.stderr
    assert message.count("missing, so nothing was run") == 1
    assert f"helm: {old} is v2.17.0, outside >= v3.14.0, < v4.0.0; no Go toolchain to build it" in message
    assert "brew install helm" in message
    assert "go install helm.sh/helm/v3/cmd/helm@v3.22.0" in message
    assert (
        "kubeconform: not on PATH; no Go toolchain to build it: install it (brew install kubeconform"
        in message
    )
    assert "kubectl: not on PATH: install it (brew install kubectl" in message


def test_setup_names_every_missing_piece_in_one_message(tmp_path: Path) -> None:
    out = run(tmp_path, "check")
    assert out.returncode == 2
    message = out.stderr
    assert message.count("missing, so nothing was run") == 1
    for need in (
        "java (",
        "mvn (",
        "prometheus (",
        "promtool (",
        "amtool (",
        "shellcheck (",
        "helm:",
        "actionlint:",
    ):
        assert need in message, need
    assert (
        "apt-get install -y default-jre-headless maven prometheus prometheus-alertmanager shellcheck"
        in message
    )
    assert "brew install openjdk@17 maven prometheus alertmanager shellcheck" in message
    assert f"CRDs for the manifest checks (none in {tmp_path / 'crds'})" in message
    assert "run `make test` again" in message


def test_unknown_names_are_refused(tmp_path: Path) -> None:
    out = run(tmp_path, "tools", "helmet")
    assert out.returncode == 2
    assert "unknown: helmet" in out.stderr


def test_make_test_stops_before_any_test_when_setup_cannot_provide(tmp_path: Path) -> None:
    """No apt-get, no java, no Go on PATH: `make test` ends in set-up, with the message, and runs no test."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python3").symlink_to(sys.executable)
    make = shutil.which("make")
    assert make is not None
    env = {
        "PATH": str(bindir),
        "HOME": str(tmp_path),
        "CRD_DIR": str(tmp_path / "crds"),
        "KAFKA_PORT": "1",  # never reached: nothing may start a broker
    }
    out = subprocess.run(
        [make, "--no-print-directory", "-C", str(ROOT), "test"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=120,
    )
    assert out.returncode != 0
    assert out.stderr.count("make setup: missing, so nothing was run") == 1, out.stdout + out.stderr
    assert "java (" in out.stderr
    assert "pytest" not in out.stdout
    assert "ruff" not in out.stdout


def test_a_pinned_build_that_prints_no_version_is_known_by_its_stamp(tmp_path: Path) -> None:
    """`go install` builds of kubeconform say `development`, of helm only `v3.22`: the stamp written at
    build time names the version; the same binary elsewhere on PATH is of unknown version."""
    tools_bin = tmp_path / "tools-bin"
    tools_bin.mkdir()
    built = stub(tools_bin, "kubeconform", "development")
    (tools_bin / ".kubeconform.version").write_text("v0.8.0\n")
    out = run(tmp_path, "tools", "kubeconform")
    assert out.returncode == 0, out.stderr
    assert f"using {built} v0.8.0 (pinned, built here;" in out.stdout
    (tools_bin / ".kubeconform.version").unlink()
    out = run(tmp_path, "tools", "kubeconform")  # not a Go binary: no build info either
    assert out.returncode == 0, out.stderr
    assert f"using {built} (pinned, built here) - WARNING: its version is unknown" in out.stdout
    helm = stub(tmp_path / "bin", "helm", "v3.22")
    out = run(tmp_path, "tools", "helm")
    assert f"using {helm} v3.22.0 (on PATH" in out.stdout


def test_when_apt_get_cannot_install_the_reason_is_part_of_the_one_message(tmp_path: Path) -> None:
    """apt-get fails (as root) or may not run (no root, no passwordless sudo): one message says why."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "apt-get").write_text("#!/bin/sh\necho 'E: permission denied' >&2\nexit 100\n")
    (bindir / "apt-get").chmod(0o755)
    out = run(tmp_path, "setup")
    assert out.returncode == 2
    assert out.stderr.startswith("make setup: missing, so nothing was run:")
    assert out.stderr.count("missing, so nothing was run") == 1
    assert (
        "sudo apt-get install -y default-jre-headless maven prometheus prometheus-alertmanager shellcheck"
        in out.stderr
    )
    reason = "permission denied" if os.geteuid() == 0 else "not root and no passwordless sudo"
    assert "[not installed here: " in out.stderr
    assert reason in out.stderr


def go_tool(tmp_path: Path, module: str, package: str, tag: str | None, name: str) -> Path:
    """A real Go binary ``name`` built from a local module ``module`` tagged ``tag`` (go 1.24+ stamps the
    tag into the build info; no tag and -buildvcs=false: ``(devel)``). It prints ``development`` to
    every question, as a ``go install`` build of kubeconform does."""
    go = shutil.which("go")
    assert go is not None, "Go is a prerequisite of this repository (README): install it"
    src = tmp_path / f"src-{name}-{tag}"
    (src / package).mkdir(parents=True)
    (src / "go.mod").write_text(f"module {module}\n\ngo 1.22\n")
    (src / package / "main.go").write_text(
        'package main\n\nimport "fmt"\n\nfunc main() { fmt.Println("development") }\n'
    )
    git = ["git", "-C", str(src), "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "src"], *([["tag", tag]] if tag else [])):
        subprocess.run([*git, *args], check=True, capture_output=True)
    out = tmp_path / f"build-{tag}" / name
    vcs = "-buildvcs=true" if tag else "-buildvcs=false"
    subprocess.run(
        [go, "build", vcs, "-o", str(out), f"./{package}"], cwd=src, check=True, capture_output=True
    )
    return out


def test_a_go_install_build_on_path_is_known_by_its_module_build_info(tmp_path: Path) -> None:
    """`make tools` with a `go install`-built kubeconform on PATH (it prints `development`): its module
    build info names the version, read with `go version -m` and, with no Go on PATH, from the file."""
    built = go_tool(tmp_path, "github.com/yannh/kubeconform", "cmd/kubeconform", "v0.7.1", "kubeconform")
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    shutil.copy(built, bindir / "kubeconform")
    go_dir = str(Path(str(shutil.which("go"))).parent)
    for extra in (go_dir, ""):  # with Go (go version -m), then without (the build info in the file)
        out = run(tmp_path, "tools", "kubeconform", extra_path=extra)
        assert out.returncode == 0, out.stderr
        assert f"using {bindir / 'kubeconform'} v0.7.1 (on PATH; supported" in out.stdout
        assert "WARNING" not in out.stdout


def test_build_info_outside_the_range_is_refused_and_a_devel_build_is_used_with_a_warning(
    tmp_path: Path,
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    new = go_tool(tmp_path, "github.com/yannh/kubeconform", "cmd/kubeconform", "v1.2.0", "kubeconform")
    shutil.copy(new, bindir / "kubeconform")
    out = run(tmp_path, "tools", "kubeconform")
    assert out.returncode == 2
    assert f"{bindir / 'kubeconform'} is v1.2.0, outside >= v0.6.4, < v1.0.0" in out.stderr
    devel = go_tool(tmp_path, "github.com/yannh/kubeconform", "cmd/kubeconform", None, "kubeconform")
    shutil.copy(devel, bindir / "kubeconform")
    out = run(tmp_path, "tools", "kubeconform")
    assert out.returncode == 0, out.stderr
    assert "WARNING: its version is unknown" in out.stdout
    # another module's binary under the tool's name: its build info is not the tool's
    other = go_tool(tmp_path, "example.invalid/other", "cmd/kubeconform", "v0.7.1", "kubeconform")
    shutil.copy(other, bindir / "kubeconform")
    out = run(tmp_path, "tools", "kubeconform")
    assert "v0.7.1" not in out.stdout + out.stderr
