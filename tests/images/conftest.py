"""Fixtures of the image tier: the daemon-free builder (tools/images) and a PRIVATE containerd.

Needs root, debootstrap, containerd, runc and ctr (Debian packages). Missing ones skip the tier with the
reason, and fail it under CI (`CI` set), where `make setup` must have provided them: nothing is skipped
silently.

The images are built with `make images-oci` into a temporary folder, with the per-user cache (the first
build of a machine debootstraps the base: minutes; later ones reuse it).

The containerd is this session's own: its own config, root, state and socket under a temporary folder,
the CRI plugin disabled (no CNI, no iptables), ``restrict_oom_score_adj = true`` set for it all the same
(the setting a CRI node needs on this machine, see issue 17), runc's state in the same folder
(``--runc-root``) and containers started without a cgroup of their own (``--cgroup ""``) so that nothing
is left in the host's cgroup hierarchies. It never touches another containerd (the node's, the
system's): only its shims' sockets live where containerd 1.6 always puts them (/run/containerd/s/, named
by a hash of this socket's path). At the end the daemon and any shim started for it are stopped by PID,
leftover mounts under its root are unmounted, and the folder is removed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ("producer", "consumer")
NEEDED = ("debootstrap", "containerd", "runc", "ctr", "unshare", "chroot")
NAMESPACE = "login-images-test"
BUILD_TIMEOUT = 3600


def unavailable(reason: str) -> None:
    """Skip with the reason; under CI fail instead (`make setup` must provide what the tier needs)."""
    if os.environ.get("CI"):
        pytest.fail(f"image tier: {reason}", pytrace=False)
    pytest.skip(f"image tier: {reason}")


def require_builder() -> None:
    if os.geteuid() != 0:
        unavailable("needs root (debootstrap, overlay mounts, chroot, containerd)")
    missing = [c for c in NEEDED if shutil.which(c) is None]
    if missing:
        unavailable(f"missing {', '.join(missing)} (apt-get install debootstrap containerd runc)")


def make(*args: str, timeout: float = BUILD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(ROOT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@dataclass(frozen=True)
class Built:
    folder: Path
    output: str
    seconds: float

    def archive(self, service: str) -> Path:
        return self.folder / f"login-{service}.tar"


def build_images(folder: Path, tag: str) -> Built:
    started = time.monotonic()
    out = make("images-oci", f"IMAGES_DIR={folder}", f"IMAGE_TAG={tag}")
    seconds = time.monotonic() - started
    assert out.returncode == 0, f"make images-oci failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return Built(folder, out.stdout, seconds)


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    require_builder()
    result = build_images(tmp_path_factory.mktemp("images"), "test")
    print(f"\nmake images-oci: {result.seconds:.1f} s\n{result.output}", file=sys.stderr)
    return result


CONFIG = """\
version = 2
root = "{root}/root"
state = "{root}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = "{root}/containerd.sock"

[ttrpc]
  address = "{root}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  restrict_oom_score_adj = true
"""


@dataclass
class Containerd:
    """A running private containerd: ``ctr(...)`` and ``run(image, *args)`` against it."""

    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return str(self.folder / "containerd.sock")

    def ctr(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ctr", "--address", self.address, "--namespace", NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def run(self, image: str, *args: str, read_only: bool = False) -> subprocess.CompletedProcess[str]:
        """``ctr run --rm`` of ``image`` as its own user (the image config's User), no network but
        loopback, no cgroup of its own; ``args`` replace entrypoint and command when given."""
        flags = ["--rm", "--cgroup", "", "--runc-root", str(self.folder / "runc")]
        if read_only:
            flags.append("--read-only")
        name = f"t-{uuid.uuid4().hex[:10]}"
        return self.ctr("run", *flags, image, name, *args, timeout=120)


def _start(folder: Path) -> Containerd:
    (folder / "config.toml").write_text(CONFIG.format(root=folder))
    log = (folder / "containerd.log").open("wb")
    process = subprocess.Popen(
        ["containerd", "--config", str(folder / "config.toml")],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    daemon = Containerd(folder, process)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if Path(daemon.address).exists() and daemon.ctr("version", timeout=10).returncode == 0:
            return daemon
        time.sleep(0.3)
    _stop(daemon)
    tail = (folder / "containerd.log").read_text(errors="replace")[-2000:]
    pytest.fail(f"the private containerd did not answer within 60 s:\n{tail}", pytrace=False)
    raise AssertionError  # unreachable


def _shims(address: str) -> list[int]:
    """PIDs of the shims this containerd started (their command line names its socket)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if address.encode() in cmdline and b"containerd-shim" in cmdline[0]:
            pids.append(int(proc.name))
    return pids


def _stop(daemon: Containerd) -> None:
    if daemon.process.poll() is None:
        daemon.process.send_signal(signal.SIGTERM)
        try:
            daemon.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            daemon.process.kill()
            daemon.process.wait(timeout=10)
    for pid in _shims(daemon.address):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    mounts = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(str(daemon.folder))
    ]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
    shutil.rmtree(daemon.folder, ignore_errors=True)


@pytest.fixture(scope="session")
def containerd() -> Iterator[Containerd]:
    require_builder()
    # a short path: unix socket paths are limited to 108 bytes
    folder = Path(tempfile.mkdtemp(prefix="li-ctrd-", dir="/tmp"))
    daemon = _start(folder)
    try:
        yield daemon
    finally:
        _stop(daemon)
