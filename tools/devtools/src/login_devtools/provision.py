#!/usr/bin/env python3
"""Provision what the project's make targets need: ``make setup`` (before every ``make test``) and
``make tools``.

    provision.py setup            system packages, the tools the tests run, the CRDs (make setup)
    provision.py tools [NAME...]  helm, kind, kubectl, kubeconform, actionlint (make tools)
    provision.py check            report what is missing, install nothing

System packages (``SYSTEM``) are installed with apt-get when this user may (root, or passwordless sudo).
Tools (``TOOLS``) already on PATH are used when their version lies in the supported range; otherwise the
pinned version is built with ``go install`` into .cache/bin (which the Makefile puts first on PATH).
Whatever cannot be had is reported in ONE message listing each missing piece and the command that
installs it, and the exit code is 2: no test starts on a half-provisioned machine.

To add a need, add one entry to ``SYSTEM`` (a command and its package names) or ``TOOLS``, and the
name to ``NEEDS`` for the targets that need it. Standard library only: this runs before the virtualenv.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from login_devtools import ROOT

TOOLS_BIN = Path(os.environ.get("TOOLS_BIN", ROOT / ".cache" / "bin"))
Version = tuple[int, int, int]


@dataclass(frozen=True)
class SystemNeed:
    """A command that a platform package provides."""

    command: str
    apt: str  # Debian / Ubuntu
    brew: str  # macOS (Homebrew)
    why: str


@dataclass(frozen=True)
class Tool:
    """A command-line tool used from PATH when its version is in [minimum, below); else ``go install``-ed."""

    name: str
    version_args: tuple[str, ...]
    minimum: Version
    below: Version
    pinned: str  # the version `go install` builds, e.g. v3.22.0
    module: str | None  # Go package path for `go install`; None: not built here
    how: str  # how a person installs it without Go


# The one list of system packages. Java 17+ and Maven run the local Kafka broker (local_kafka.py);
# prometheus/promtool run the alert-rule tests, the real-Prometheus test and the demo; Debian's
# prometheus-alertmanager (0.25 on bookworm; its binary has the package's name, and it ships amtool) routes
# the alerts locally and in the alert-routing tests (Homebrew's `alertmanager` names its binary
# alertmanager: local_alertmanager.py takes either); actionlint checks
# the workflow's run: scripts with shellcheck.
SYSTEM: tuple[SystemNeed, ...] = (
    SystemNeed("java", "default-jre-headless", "openjdk@17", "runs the local Kafka broker (Java 17+)"),
    SystemNeed("mvn", "maven", "maven", "assembles the broker's jars from Maven Central"),
    SystemNeed("prometheus", "prometheus", "prometheus", "the local Prometheus (demo, run, tests)"),
    SystemNeed("promtool", "prometheus", "prometheus", "checks and unit-tests the alert rules"),
    SystemNeed(
        "prometheus-alertmanager",
        "prometheus-alertmanager",
        "alertmanager",
        "the local Alertmanager (demo, run, the alert-routing tests)",
    ),
    SystemNeed("amtool", "prometheus-alertmanager", "alertmanager", "checks and tests the routing tree"),
    SystemNeed("shellcheck", "shellcheck", "shellcheck", "actionlint lints the workflow's scripts with it"),
    # the real node (k8s_node.py, tests/real_node): Linux and root only, so no Homebrew names
    SystemNeed("containerd", "containerd", "", "the real node's container runtime"),
    SystemNeed("runc", "runc", "", "runs the real node's containers"),
    SystemNeed("/usr/lib/cni/bridge", "containernetworking-plugins", "", "the real node's pod network (CNI)"),
    SystemNeed("iptables", "iptables", "", "kube-proxy's Services and the pods' NAT"),
    SystemNeed("conntrack", "conntrack", "", "kube-proxy clears stale UDP flows with it"),
    SystemNeed("debootstrap", "debootstrap", "", "the daemon-free image builder's base file system"),
    # the image tier (tests/images) on the same machines: containerd's client and a static example binary
    SystemNeed("ctr", "containerd", "", "imports the built images into containerd"),
    SystemNeed("gcc", "gcc libc6-dev", "", "compiles the static example binary of the image tier"),
)
# What only a machine that can host the real node installs (root on Linux: a kubelet needs it).
NODE_NEEDS = (
    *("containerd", "runc", "/usr/lib/cni/bridge", "iptables", "conntrack", "debootstrap"),
    *("ctr", "gcc"),  # the image tier: imports into its private containerd, the example's static binary
)

# The one list of tools. Ranges: what the make targets and tests are written against.
TOOLS: tuple[Tool, ...] = (
    Tool(
        "helm",
        ("version", "--template", "{{.Version}}"),
        (3, 14, 0),
        (4, 0, 0),
        "v3.22.0",
        "helm.sh/helm/v3/cmd/helm",
        "brew install helm, or see helm.sh/docs/intro/install",
    ),
    Tool(
        "kind",
        ("version",),
        (0, 27, 0),
        (1, 0, 0),
        "v0.33.0",
        "sigs.k8s.io/kind",
        "brew install kind, or see kind.sigs.k8s.io/docs/user/quick-start",
    ),
    Tool(
        "kubectl",
        ("version", "--client"),
        (1, 31, 0),
        (2, 0, 0),
        "",
        None,
        "brew install kubectl, or see kubernetes.io/docs/tasks/tools",
    ),
    Tool(
        "kubeconform",
        ("-v",),
        (0, 6, 4),
        (1, 0, 0),
        "v0.8.0",
        "github.com/yannh/kubeconform/cmd/kubeconform",
        "brew install kubeconform, or see github.com/yannh/kubeconform",
    ),
    Tool(
        "actionlint",
        ("-version",),
        (1, 7, 0),
        (2, 0, 0),
        "v1.7.12",
        "github.com/rhysd/actionlint/cmd/actionlint",
        "brew install actionlint, or see github.com/rhysd/actionlint",
    ),
)

# What each entry point needs. `make test` = setup; a later build step adds its names here.
HOSTS_NODE = sys.platform == "linux" and os.geteuid() == 0
NEEDS: dict[str, tuple[str, ...]] = {
    "setup": (
        *("java", "mvn", "prometheus", "promtool", "prometheus-alertmanager", "amtool", "shellcheck"),
        *("helm", "kubeconform", "actionlint"),
        *(NODE_NEEDS if HOSTS_NODE else ()),
    ),
    "tools": ("helm", "kind", "kubectl", "kubeconform", "actionlint"),
}

VERSION_RE = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")


def say(message: str) -> None:
    print(f"setup: {message}", flush=True)


def show(version: Version) -> str:
    return "v" + ".".join(map(str, version))


def parse_version(text: str) -> Version | None:
    match = VERSION_RE.search(text)
    if match is None:
        return None
    major, minor, patch = match.groups()
    return int(major), int(minor), int(patch or 0)


def stamp(tool: Tool) -> Path:
    """Where ``go install`` records the version it built: such builds may print none (``development``)
    or only major.minor."""
    return TOOLS_BIN / f".{tool.name}.version"


def version_of(path: str, tool: Tool) -> Version | None:
    """The tool's version: our stamp for our own builds, else what it prints, else its Go module build
    info (a ``go install`` build of kubeconform prints no version at all)."""
    if Path(path).parent == TOOLS_BIN and stamp(tool).exists():
        return parse_version(stamp(tool).read_text())
    try:
        out = subprocess.run(
            [path, *tool.version_args], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    printed = parse_version(out.stdout + "\n" + out.stderr)
    if printed is not None or tool.module is None:
        return printed
    return module_version(path, tool)


# A Go binary embeds its build info ("path\t<package>", "mod\t<module>\t<version>\t<sum>" lines), which
# `go version -m` prints; without Go it is read from the binary itself (runtime/debug.BuildInfo's text).
MOD_LINE = re.compile(rb"(?:^|\n)\t?mod\t([^\t\n]+)\t(v\d+\.\d+\.\d+[^\t\n]*)")


def module_version(path: str, tool: Tool) -> Version | None:
    """The version of the module a Go binary was built from when it is the tool's module (``go version
    -m``, or the build info read from the file when there is no Go); None for a ``(devel)`` build."""
    text = b""
    go = shutil.which("go")
    if go is not None:
        try:
            done = subprocess.run([go, "version", "-m", path], capture_output=True, timeout=30, check=False)
            text = done.stdout
        except (OSError, subprocess.TimeoutExpired):
            text = b""
    if not text:
        try:
            text = Path(path).read_bytes()
        except OSError:
            return None
    module = (tool.module or "").encode()
    for match in MOD_LINE.finditer(text.replace(b"\r", b"")):
        name = match.group(1).strip()
        if module == name or module.startswith(name + b"/"):
            return parse_version(match.group(2).decode(errors="replace"))
    return None


# --- system packages -------------------------------------------------------------------------------


def missing_system(names: tuple[str, ...]) -> list[SystemNeed]:
    return [need for need in SYSTEM if need.command in names and shutil.which(need.command) is None]


def privilege() -> list[str] | None:
    """The prefix that runs apt-get as root: [] for root, ["sudo", "-n"] with passwordless sudo, else None."""
    if shutil.which("apt-get") is None:
        return None
    if os.geteuid() == 0:
        return []
    sudo = shutil.which("sudo")
    if sudo and subprocess.run([sudo, "-n", "true"], capture_output=True, check=False).returncode == 0:
        return [sudo, "-n"]
    return None


def packages(needs: list[SystemNeed], manager: str) -> list[str]:
    """The packages to install (a need may name several, space-separated)."""
    return list(dict.fromkeys(p for need in needs for p in getattr(need, manager).split()))


def install_system(needs: list[SystemNeed]) -> str:
    """Install with apt-get when possible; returns what went wrong ('' when it ran)."""
    prefix = privilege()
    if prefix is None:
        return "not root and no passwordless sudo (or no apt-get)"
    pkgs = packages(needs, "apt")
    say(f"installing {' '.join(pkgs)} (apt-get) for {', '.join(n.command for n in needs)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for args in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs],
    ):
        out = subprocess.run([*prefix, *args], capture_output=True, text=True, env=env, check=False)
        if out.returncode != 0:
            return f"`{' '.join(args)}` failed: {(out.stderr or out.stdout).strip()[-400:]}"
    return ""


def system_hint(needs: list[SystemNeed]) -> str:
    apt = "sudo apt-get install -y " + " ".join(packages(needs, "apt"))
    brew = "brew install " + " ".join(packages(needs, "brew"))
    if shutil.which("apt-get"):
        return apt
    if shutil.which("brew"):
        return brew
    return f"{apt}   (macOS: {brew})"


# --- tools ------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    path: str | None
    line: str  # what is used and why, or what is missing and how to get it


def in_range(version: Version, tool: Tool) -> bool:
    return tool.minimum <= version < tool.below


def find_tool(tool: Tool) -> Outcome:
    """The tool on PATH (.cache/bin first) when its version is supported; else ``path`` is None."""
    supported = f">= {show(tool.minimum)}, < {show(tool.below)}"
    seen: list[str] = []
    search = f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"
    for directory in dict.fromkeys(search.split(os.pathsep)):
        candidate = Path(directory or ".") / tool.name
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            continue
        version = version_of(str(candidate), tool)
        where = "pinned, built here" if candidate.parent == TOOLS_BIN else "on PATH"
        if version is not None and in_range(version, tool):
            return Outcome(
                str(candidate), f"using {candidate} {show(version)} ({where}; supported {supported})"
            )
        if version is None and runs(str(candidate), tool):
            # It runs but neither it nor its build info names a version (a source build: "(devel)"):
            # used, with a warning, rather than refused, since nothing says it is unsupported.
            return Outcome(
                str(candidate),
                f"using {candidate} ({where}) - WARNING: its version is unknown (it prints none and its "
                f"build info names none); supported {supported}, pinned {tool.pinned or '-'}",
            )
        seen.append(f"{candidate} is {show(version) if version else 'of unknown version'}")
    reason = "; ".join(seen) + f", outside {supported}" if seen else "not on PATH"
    return Outcome(None, reason)


def runs(path: str, tool: Tool) -> bool:
    """The tool answers its version command with exit code 0."""
    try:
        done = subprocess.run([path, *tool.version_args], capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def go_install(tool: Tool) -> str:
    """Build the pinned version into TOOLS_BIN; returns what went wrong ('' on success)."""
    go = shutil.which("go")
    if go is None:
        return "no Go toolchain to build it"
    TOOLS_BIN.mkdir(parents=True, exist_ok=True)
    say(f"{tool.name}: go install {tool.module}@{tool.pinned} into {TOOLS_BIN} ...")
    out = subprocess.run(
        [go, "install", f"{tool.module}@{tool.pinned}"],
        env={**os.environ, "GOBIN": str(TOOLS_BIN)},
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return f"go install failed: {(out.stderr or out.stdout).strip()[-400:]}"
    stamp(tool).write_text(tool.pinned + "\n")
    return ""


def ensure_tool(tool: Tool) -> Outcome:
    found = find_tool(tool)
    if found.path is not None:
        return found
    if tool.module is None:
        return Outcome(None, f"{found.line}: install it ({tool.how})")
    problem = go_install(tool)
    if not problem:
        again = find_tool(tool)
        if again.path is not None:
            return again
        problem = f"built, but {again.line}"
    go_cmd = f"GOBIN={TOOLS_BIN} go install {tool.module}@{tool.pinned}"
    return Outcome(None, f"{found.line}; {problem}: install it ({tool.how}), or with Go: {go_cmd}")


# --- CRDs -------------------------------------------------------------------------------------------


def crd_dirs() -> list[Path]:
    """Where the manifest checks find CRDs: CRD_DIR, else `make crds`' output, else ../shared/crds (a
    fallback for a machine that reaches no package registry)."""
    named = os.environ.get("CRD_DIR", "")
    return [Path(named)] if named else [ROOT / ".cache" / "crds", ROOT.parent / "shared" / "crds"]


def has_crds(directory: Path) -> bool:
    return directory.is_dir() and any(directory.rglob("*.y*ml"))


def ensure_crds(allow_fetch: bool) -> str:
    """'' when the CRDs for the offline manifest checks are there; else how to get them.

    Without CRD_DIR, `make crds` runs every time (it only links once the per-user cache holds them):
    Strimzi's generated from Maven Central, prometheus-operator's and KEDA's from their Go modules."""
    named = os.environ.get("CRD_DIR", "")
    failed = ""
    if allow_fetch and not named:
        make = os.environ.get("MAKE", "make")
        out = subprocess.run(
            [make, "--no-print-directory", "crds"], cwd=ROOT, capture_output=True, text=True, check=False
        )
        if out.returncode == 0 and has_crds(crd_dirs()[0]):
            say(f"CRDs: {crd_dirs()[0]} ({out.stdout.strip().splitlines()[-1]})")
            return ""
        tail = (out.stderr.strip() or out.stdout.strip()).splitlines()[-3:]
        failed = f"`make crds` failed: {' / '.join(tail)}"
    found = next((d for d in crd_dirs() if has_crds(d)), None)
    if found is not None:
        say(f"CRDs: {found}" + (f" ({failed}; using this fallback)" if failed else ""))
        return ""
    where = " or ".join(str(d) for d in crd_dirs())
    why = f" [{failed}]" if failed else ""
    return (
        f"CRDs for the manifest checks (none in {where}): `make crds` (Maven Central and the Go module "
        f"proxy; Java 21+, mvn, go), or set CRD_DIR{why}"
    )


# --- entry points -----------------------------------------------------------------------------------


def provision(target: str, names: tuple[str, ...], *, install: bool) -> int:
    problems: list[str] = []
    system = missing_system(names)
    failed = ""
    if system and install:
        failed = install_system(system)
        system = missing_system(names)
    if system:
        listed = ", ".join(f"{n.command} ({n.why})" for n in system)
        why = f" [not installed here: {failed}]" if failed else ""
        problems.append(f"{listed}: {system_hint(system)}{why}")
    for tool in TOOLS:
        if tool.name not in names:
            continue
        outcome = ensure_tool(tool) if install else find_tool(tool)
        if outcome.path is None:
            problems.append(f"{tool.name}: {outcome.line}")
        else:
            say(f"{tool.name}: {outcome.line}")
    if target == "setup":
        crds = ensure_crds(allow_fetch=install and not problems)
        if crds:
            problems.append(crds)
    if problems:
        lines = "\n".join(f"  - {p}" for p in problems)
        print(
            f"make {target}: missing, so nothing was run:\n{lines}\n"
            f"Install these, then run `make {'test' if target == 'setup' else target}` again.",
            file=sys.stderr,
            flush=True,
        )
        return 2
    for need in SYSTEM:
        if need.command in names:
            say(f"{need.command}: {shutil.which(need.command)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["setup", "tools", "check"])
    parser.add_argument("names", nargs="*", help="tools to provide (tools only; default: all)")
    args = parser.parse_args(argv)
    known = {n.command for n in SYSTEM} | {t.name for t in TOOLS}
    unknown = sorted(set(args.names) - known)
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    if args.command == "tools":
        return provision("tools", tuple(args.names) or NEEDS["tools"], install=True)
    if args.command == "check":
        return provision("setup", NEEDS["setup"], install=False)
    return provision("setup", NEEDS["setup"], install=True)


if __name__ == "__main__":
    sys.exit(main())
