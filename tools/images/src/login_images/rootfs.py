"""Root filesystems without a daemon: debootstrap for a Debian base, a chroot on an overlay mount to run
a layer's steps, and the trim rules that make the base small.

Isolation without a container engine: every step runs under ``unshare --mount --pid --fork`` with
private mount propagation. Inside that namespace the script mounts the overlay (lower = the layers below,
read-only; upper = the new layer), a fresh ``/proc``, a tmpfs ``/dev`` with the usual device nodes, a
tmpfs on ``/tmp`` and ``/run``, and binds the host's ``/etc/resolv.conf`` (and the CA bundle pip is
told to trust) over the root's; then it ``chroot``s with a clean environment. When the step ends, the
namespace and with it every mount disappear, even after a crash or a kill: nothing is left mounted on
the host, nothing of the host leaks into the upper directory (the tmpfs and bind mounts hide it), and
the PID namespace ends any process a step left behind. The network namespace is the host's: pip and
apt reach their package indexes as the host does (proxies and pip's index settings are passed on).

Needs root (debootstrap, mount, chroot): :func:`preflight` says so, and what else is missing, before
anything starts.

The base is made of Debian as released plus its security and updates suites: the host's apt sources
for the same suite when the host runs it (its mirror, its proxy), else sources derived from
debootstrap's mirror. ``apt-get upgrade`` runs once, when the base is built; the cached base keeps
those versions until it is rebuilt (``login-images build --refresh-base``).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from login_images.errors import BuildError, PreflightError
from login_images.spec import Run
from login_images.tarball import Select, walk

# What the base drops (tarball.Select patterns, relative to the root): package indexes and caches,
# documentation except the copyright files, manuals, translations, logs, host files debootstrap copied.
TRIM_EXCLUDE: tuple[str, ...] = (
    "var/lib/apt/lists/*",
    "var/cache/apt/*",
    "var/cache/debconf/*-old",
    "var/cache/ldconfig/aux-cache",
    "var/lib/dpkg/*-old",
    "var/log/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "usr/share/linda/*",
    "usr/share/bug/*",
    "dev/*",
    "proc/*",
    "sys/*",
    "run/*",
    "tmp/*",
    "var/tmp/*",
    "root/.cache",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/machine-id",
    "var/lib/dbus/machine-id",
)
TRIM_KEEP: tuple[str, ...] = ("usr/share/doc/*/copyright",)
# /etc/hosts as a container runtime without its own expects to find it (debootstrap copied the host's).
HOSTS = b"127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"

# Passed from the host to steps that download (pip, apt): proxies and pip's index settings.
PASS_ENV = (
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_TRUSTED_HOST",
    "PIP_DEFAULT_TIMEOUT",
)
CA_ENV = ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE")
CA_INSIDE = "/run/login-images/ca.pem"
DEVICES = (("null", 1, 3), ("zero", 1, 5), ("full", 1, 7), ("random", 1, 8), ("urandom", 1, 9), ("tty", 5, 0))
COMMANDS = ("unshare", "chroot", "mount", "mknod", "env")


def preflight(debian: bool) -> None:
    """Raise :class:`PreflightError` naming everything this machine lacks to build."""
    problems = []
    if os.geteuid() != 0:
        problems.append(
            "not root: debootstrap, overlay mounts and chroot need root (run it as root, e.g. with sudo)"
        )
    needed = [*COMMANDS, *(("debootstrap",) if debian else ())]
    missing = [c for c in needed if shutil.which(c) is None]
    if missing:
        problems.append(f"missing commands: {', '.join(missing)} (apt-get install debootstrap util-linux)")
    filesystems = Path("/proc/filesystems")
    if filesystems.exists() and "overlay" not in filesystems.read_text():
        problems.append("the kernel offers no overlay filesystem (modprobe overlay)")
    if problems:
        raise PreflightError("cannot build images here: " + "; ".join(problems))


@dataclass(frozen=True)
class Sources:
    """Where debootstrap downloads from, and the apt sources the base gets (Deb822 or one-line files)."""

    mirror: str  # "" = debootstrap's default
    files: tuple[tuple[str, bytes], ...]  # (name under /etc/apt/sources.list.d, content)


def _host_codename() -> str:
    release = Path("/etc/os-release")
    if not release.exists():
        return ""
    match = re.search(r"^VERSION_CODENAME=\"?([\w-]+)", release.read_text(), re.MULTILINE)
    return match[1] if match else ""


def host_sources(suite: str) -> Sources:
    """The host's apt sources when it runs ``suite`` (its mirror first), else none: debootstrap's own."""
    if _host_codename() != suite:
        return Sources("", ())
    files: list[tuple[str, bytes]] = []
    mirror = ""
    etc = Path("/etc/apt")
    candidates = [etc / "sources.list", *sorted((etc / "sources.list.d").glob("*"))]
    for path in candidates:
        if not path.is_file() or path.suffix not in (".list", ".sources"):
            continue
        text = path.read_text()
        if suite not in text:
            continue
        name = path.name if path.parent.name == "sources.list.d" else "host.list"
        files.append((name, text.encode()))
        if not mirror:
            deb822 = re.search(r"^URIs:\s*(\S+)", text, re.MULTILINE)
            oneline = re.search(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{re.escape(suite)}\s", text, re.MULTILINE)
            found = deb822 or oneline
            mirror = found[1] if found else ""
    return Sources(mirror, tuple(files))


def derived_sources(sources_list: str, suite: str) -> bytes:
    """From debootstrap's ``deb <mirror> <suite> main``: the same plus -updates and -security."""
    match = re.search(r"^deb\s+(\S+)\s+\S+\s+(.*)$", sources_list, re.MULTILINE)
    if match is None:
        return sources_list.encode()
    mirror, components = match[1].rstrip("/"), match[2].strip()
    return (
        f"deb {mirror} {suite} {components}\n"
        f"deb {mirror} {suite}-updates {components}\n"
        f"deb {mirror}-security {suite}-security {components}\n"
    ).encode()


@dataclass(frozen=True)
class Overlay:
    """Where a step runs: ``lowers`` (top first, read-only) under ``upper`` (which receives the changes,
    with ``work`` as overlayfs' work directory), mounted at ``mount``. Without ``upper`` the step runs
    directly on ``lowers[0]`` (a bind mount: how the base itself is upgraded)."""

    lowers: tuple[Path, ...]
    mount: Path
    upper: Path | None = None
    work: Path | None = None

    def __post_init__(self) -> None:
        if not self.lowers or (self.upper is None) != (self.work is None):
            raise ValueError(f"an overlay needs lowers, and an upper with a work directory: {self}")


@dataclass
class Runner:
    """Runs commands in chroots of overlay mounts; logs each step to ``log_dir``."""

    log_dir: Path
    epoch: int
    say: Callable[[str], None]
    timeout: float = 3600.0

    def _ca_file(self) -> str:
        for name in CA_ENV:
            value = os.environ.get(name, "")
            if value and Path(value).is_file():
                return value
        return ""

    def environment(self, run: Run) -> dict[str, str]:
        env = {"HOME": "/root", "SOURCE_DATE_EPOCH": str(self.epoch)}
        env.update(dict(run.env))
        for name in PASS_ENV:
            if name in os.environ and name not in env:
                env[name] = os.environ[name]
        if self._ca_file():
            env.setdefault("PIP_CERT", CA_INSIDE)
        return env

    def script(self, root: Overlay, runs: Sequence[Run]) -> str:
        """The shell script that runs inside the new namespaces (see the module docstring)."""
        q = shlex.quote
        mount = root.mount
        m = q(str(mount))
        lines = ["set -eu"]
        if root.upper is None or root.work is None:
            lines.append(f"mount --bind {q(str(root.lowers[0]))} {m}")
        else:
            lower = ":".join(str(p) for p in root.lowers)
            options = f"lowerdir={lower},upperdir={root.upper},workdir={root.work}"
            lines.append(f"mount -t overlay overlay -o {q(options)} {m}")
        lines += [
            f"mount -t proc proc {m}/proc",
            f"mount -t tmpfs -o mode=0755,nosuid tmpfs {m}/dev",
            *(f"mknod -m 666 {m}/dev/{n} c {a} {b}" for n, a, b in DEVICES),
            f"ln -s /proc/self/fd {m}/dev/fd",
            *(f"ln -s /proc/self/fd/{i} {m}/dev/{n}" for i, n in enumerate(("stdin", "stdout", "stderr"))),
            f"mkdir {m}/dev/pts {m}/dev/shm",
            f"if [ -d {m}/tmp ]; then mount -t tmpfs -o mode=1777 tmpfs {m}/tmp; fi",
            f"if [ -d {m}/run ]; then mount -t tmpfs -o mode=0755 tmpfs {m}/run; fi",
            f"if [ -e {m}/etc/resolv.conf ]; then mount --bind /etc/resolv.conf {m}/etc/resolv.conf; fi",
        ]
        ca = self._ca_file()
        if ca:
            inside = f"{m}{CA_INSIDE}"
            lines += [
                f"if [ -d {m}/run ]; then mkdir -p $(dirname {inside}) && : > {inside}"
                f" && mount --bind {q(ca)} {inside}; fi"
            ]
        for run in runs:
            env = [f"{k}={v}" for k, v in self.environment(run).items()]
            argv = ["/bin/sh", "-c", run.command] if run.shell else _json_argv(run.command)
            user = [f"--userspec={run.user}"] if run.user else []
            command = [
                "chroot",
                *user,
                str(mount),
                "/usr/bin/env",
                "-i",
                "-C",
                run.workdir or "/",
                *env,
                *argv,
            ]
            lines.append(f"echo {q('+ ' + run.command)}")
            lines.append(" ".join(q(c) for c in command))
        return "\n".join(lines) + "\n"

    def run(self, name: str, root: Overlay, runs: Sequence[Run]) -> None:
        """Run ``runs`` in order in one chroot of ``root``. Raises :class:`BuildError` with the log's
        tail when a command fails."""
        root.mount.mkdir(parents=True, exist_ok=True)
        script = self.script(root, runs)
        argv = ["unshare", "--mount", "--pid", "--fork", "--propagation", "private", "/bin/sh", "-c", script]
        self._execute(name, argv)

    def debootstrap(self, target: Path, suite: str, packages: Sequence[str], mirror: str) -> None:
        include = f"--include={','.join(packages)}" if packages else ""
        command = ["debootstrap", "--variant=minbase", *([include] if include else []), suite, str(target)]
        if mirror:
            command.append(mirror)
        # in a private mount namespace too: debootstrap mounts /proc and /sys in the target itself
        argv = ["unshare", "--mount", "--propagation", "private", *command]
        self._execute(f"debootstrap {suite}", argv)

    def _execute(self, name: str, argv: list[str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        # one log per run (concurrent builds share the cache); cache.py prunes old ones
        stem = re.sub(r"[^\w.-]+", "-", name)[:80]
        log = self.log_dir / f"{time.strftime('%Y%m%d-%H%M%S')}-{stem}-{uuid.uuid4().hex[:6]}.log"
        started = time.monotonic()
        self.say(f"   {name} ...")
        with log.open("wb") as out:
            try:
                done = subprocess.run(
                    argv, stdout=out, stderr=subprocess.STDOUT, timeout=self.timeout, check=False
                )
            except subprocess.TimeoutExpired as exc:
                raise BuildError(f"{name}: no result after {self.timeout:.0f} s (log: {log})") from exc
        seconds = time.monotonic() - started
        if done.returncode != 0:
            tail = log.read_bytes()[-3000:].decode(errors="replace").strip()
            raise BuildError(f"{name} failed (exit {done.returncode}, log: {log}):\n{tail}")
        self.say(f"   {name}: {seconds:.1f} s")


def _json_argv(text: str) -> list[str]:
    value = json.loads(text)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BuildError(f"RUN {text}: not a JSON array of strings")
    return value


def dpkg_versions(root: Path) -> dict[str, str]:
    """Package -> version of what dpkg installed in ``root`` (its status file)."""
    status = root / "var" / "lib" / "dpkg" / "status"
    out: dict[str, str] = {}
    if not status.exists():
        return out
    for paragraph in status.read_text().split("\n\n"):
        fields = dict(re.findall(r"^(Package|Version|Status): (.*)$", paragraph, re.MULTILINE))
        if "Package" in fields and fields.get("Status", "").endswith(" installed"):
            out[fields["Package"]] = fields.get("Version", "")
    return out


def python_version(root: Path) -> str:
    """The upstream version of the root's python3 (``3.11.2`` of Debian's ``3.11.2-6+deb12u9``)."""
    versions = dpkg_versions(root)
    minors = sorted(p for p in versions if re.fullmatch(r"python3\.\d+", p))
    if not minors:
        return ""
    match = re.match(r"(?:\d+:)?([\d.]+)", versions[minors[-1]])
    return match[1] if match else ""


def link_farm(source: Path, dest: Path, select: Select, overrides: Mapping[str, bytes]) -> None:
    """What ``select`` takes from ``source``, at ``dest``, made of hard links (no data copied), with
    ``overrides`` written as new files. The source is never modified: the copy's files share inodes
    with it, and nothing writes to them (an overlay above copies a file up before changing it)."""
    dest.mkdir(parents=True)
    directories = []
    for entry in walk(source, select):
        target = dest / entry.rel
        if entry.rel in overrides:
            continue
        if stat.S_ISDIR(entry.st.st_mode):
            target.mkdir()
            os.chown(target, entry.st.st_uid, entry.st.st_gid)
            os.chmod(target, stat.S_IMODE(entry.st.st_mode))
            directories.append((target, entry.st))
        elif stat.S_ISLNK(entry.st.st_mode):
            os.symlink(os.readlink(entry.path), target)
            os.lchown(target, entry.st.st_uid, entry.st.st_gid)
        else:
            os.link(entry.path, target)
    for rel, content in overrides.items():
        target = dest / rel
        target.write_bytes(content)
        os.chmod(target, 0o644)
    for target, st in reversed(directories):
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
