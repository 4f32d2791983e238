"""Import OCI archives into a containerd given by its socket address, with the ``ctr`` client that
Debian's containerd package ships (no registry, no Docker).

``ctr --address <socket> --namespace <ns> images import <archive>`` stores the blobs, names the image
from the archive's ``io.containerd.image.name`` annotation and unpacks it into the default snapshotter.
Kubernetes (CRI) sees the images of the ``k8s.io`` namespace, the default here. Before importing, the
socket is probed with ``ctr version`` so that a node that is not running gives one clear sentence.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from login_images.errors import ContainerdError

DEFAULT_NAMESPACE = "k8s.io"


def ctr(address: str, namespace: str, *args: str, timeout: float = 600) -> str:
    binary = shutil.which("ctr")
    if binary is None:
        raise ContainerdError("ctr not found: apt-get install containerd")
    try:
        done = subprocess.run(
            [binary, "--address", address, "--namespace", namespace, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ContainerdError(f"ctr {' '.join(args)}: no answer from {address} in {timeout:.0f} s") from exc
    if done.returncode != 0:
        raise ContainerdError(
            f"ctr {' '.join(args[:3])} at {address}: {(done.stderr or done.stdout).strip()}"
        )
    return done.stdout


def check(address: str) -> None:
    if not Path(address).exists():
        raise ContainerdError(
            f"no containerd socket at {address}: start the node's containerd first, or name another "
            "with CONTAINERD_ADDRESS=<socket>"
        )
    ctr(address, DEFAULT_NAMESPACE, "version", timeout=30)


def import_archives(address: str, archives: Sequence[Path], namespace: str = DEFAULT_NAMESPACE) -> list[str]:
    """Import each archive; returns the image names containerd now holds for them."""
    check(address)
    names = []
    for archive in archives:
        if not archive.is_file():
            raise ContainerdError(f"{archive}: no such archive (build it first: make images-oci)")
        out = ctr(address, namespace, "images", "import", str(archive))
        for line in out.splitlines():
            if line.startswith("unpacking "):
                names.append(line.split()[1])
    return names
