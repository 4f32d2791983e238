"""The per-user build cache: ``${XDG_CACHE_HOME:-~/.cache}/login-stream/images`` (``LOGIN_IMAGES_CACHE``
overrides it).

Layout (every name below a kind is a key: the sha256 of the fingerprint of what made it)::

    rootfs/<key>/    debootstrap + security updates, untrimmed (the build root's lowest layer)
    tools/<key>/     an overlay upper: the build packages (python3-pip) installed on that root
    base/<key>/      the trimmed base as a hard-link copy of rootfs/ (the lower of image steps)
    steps/<key>/     an overlay upper: what a layer's steps changed
    packs/<key>.json a packed layer: diff_id, digest, sizes (the blob is under blobs/)
    blobs/sha256/    compressed layer blobs, by digest
    locks/, tmp/, logs/            (a log per step run, kept a week)

Concurrency: :meth:`Cache.entry` holds an exclusive ``flock`` on ``locks/<kind>-<key>`` while it checks
for an entry and, if missing, builds it in ``tmp/`` and renames it into place; a second build of the same
entry (another worktree, another terminal) waits for the first and then finds it. A half-built entry is
never visible: a crash leaves only ``tmp/`` litter, removed by the next build that takes the same lock.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

LOG_DAYS = 7  # step logs older than this are removed when a build starts


def default_dir() -> Path:
    named = os.environ.get("LOGIN_IMAGES_CACHE")
    if named:
        return Path(named)
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "login-stream" / "images"


def key_of(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        for sub in ("locks", "tmp", "logs", "blobs/sha256", "packs"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        cutoff = time.time() - LOG_DAYS * 86400
        for log in (root / "logs").glob("*.log"):
            if log.stat().st_mtime < cutoff:
                log.unlink(missing_ok=True)

    @property
    def blobs(self) -> Path:
        return self.root / "blobs" / "sha256"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    def path(self, kind: str, key: str) -> Path:
        return self.root / kind / key

    @contextmanager
    def lock(self, name: str) -> Iterator[None]:
        with (self.root / "locks" / name).open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def entry(
        self, kind: str, key: str, make: Callable[[Path], None], refresh: bool = False
    ) -> tuple[Path, bool]:
        """The directory ``kind/key``, made by ``make(tmp_dir)`` unless it exists (or ``refresh``).
        Returns (path, made now)."""
        final = self.path(kind, key)
        with self.lock(f"{kind}-{key}"):
            if final.exists() and not refresh:
                return final, False
            tmp = self.root / "tmp" / f"{kind}-{key}-{uuid.uuid4().hex[:8]}"
            try:
                make(tmp)
                if final.exists():
                    remove(final)
                final.parent.mkdir(parents=True, exist_ok=True)
                os.rename(tmp, final)
            finally:
                if tmp.exists():
                    remove(tmp)
            return final, True

    def scratch(self, name: str) -> Path:
        """A fresh directory under tmp/ for work that is thrown away (overlay workdirs, mount points)."""
        path = self.root / "tmp" / f"{name}-{uuid.uuid4().hex[:8]}"
        path.mkdir(parents=True)
        return path


def remove(path: Path) -> None:
    """rm -rf, including what an overlay work directory leaves (a root-owned d--------- ``work``)."""
    if path.is_symlink() or path.is_file():
        path.unlink()
        return
    for directory, _, _ in os.walk(path):
        os.chmod(directory, 0o700)
    shutil.rmtree(path)
