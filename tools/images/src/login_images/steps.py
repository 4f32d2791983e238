"""Copy and mkdir steps applied to a layer's upper directory before its commands run (``build.py``).

Docker's COPY semantics: a directory's contents go into the destination, a file to the destination (or
into it when it ends with "/" or several sources are copied); copied files are owned by root unless
``--chown``/``owner`` says otherwise and keep their permission bits unless ``--chmod``/``mode``. Missing
parent directories are created 0755 root (or the step's owner); directories that exist in the layers
below keep their metadata in the upper directory, so the overlay shows them unchanged.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from login_images.context import Ignore, files
from login_images.errors import BuildError
from login_images.spec import Copy, MakeDir


def exists_in(rel: str, roots: Sequence[Path]) -> Path | None:
    for root in roots:
        path = root / rel
        if path.exists() or path.is_symlink():
            return path
    return None


def ensure_dir(upper: Path, lowers: Sequence[Path], rel: str, owner: tuple[int, int] | None) -> None:
    """mkdir -p of ``rel`` in ``upper``: directories that exist below keep their metadata, new ones are
    0755 and owned by ``owner`` (root if None)."""
    if not rel:
        return
    parts = rel.split("/")
    for i in range(1, len(parts) + 1):
        sub = "/".join(parts[:i])
        target = upper / sub
        if target.is_dir():
            continue
        below = exists_in(sub, lowers)
        if below is not None and below.is_dir() and not below.is_symlink():
            st = below.lstat()
            target.mkdir()
            os.chown(target, st.st_uid, st.st_gid)
            os.chmod(target, stat.S_IMODE(st.st_mode))
        elif below is not None and below.is_symlink():
            raise BuildError(f"/{sub} is a symbolic link in the image: copying through it is not supported")
        else:
            target.mkdir()
            uid, gid = owner or (0, 0)
            os.chown(target, uid, gid)
            os.chmod(target, 0o755)


def copy(context: Path, ignore: Ignore, step: Copy, upper: Path, lowers: Sequence[Path]) -> None:
    """Docker's COPY into ``upper``: a directory's contents into ``dest``; a file to ``dest`` (or into it
    when it ends with "/" or several sources are copied). Owner 0:0 unless ``step.owner``."""
    uid, gid = step.owner or (0, 0)
    dest = step.dest.rstrip("/").lstrip("/")
    into = step.dest.endswith("/") or len(step.sources) > 1
    for source in step.sources:
        entries = list(files(context, source, ignore))
        top_rel, top = entries[0]
        if top.is_dir() and not top.is_symlink():
            ensure_dir(upper, lowers, dest, step.owner)
            _own(upper / dest, uid, gid, mode=step.mode, directory=True)
            for rel, path in entries[1:]:
                _place(path, upper / dest / os.path.relpath(rel, top_rel), uid, gid, step.mode)
        else:
            target_rel = f"{dest}/{top.name}" if into else dest
            ensure_dir(upper, lowers, os.path.dirname(target_rel), None)
            _place(top, upper / target_rel, uid, gid, step.mode)


def _place(path: Path, target: Path, uid: int, gid: int, mode: int | None) -> None:
    if path.is_symlink():
        if target.exists() or target.is_symlink():
            target.unlink()
        os.symlink(os.readlink(path), target)
        os.lchown(target, uid, gid)
    elif path.is_dir():
        target.mkdir(exist_ok=True)
        _own(target, uid, gid, mode=mode, directory=True, source=path)
    else:
        shutil.copyfile(path, target)
        _own(target, uid, gid, mode=mode, directory=False, source=path)


def _own(
    target: Path, uid: int, gid: int, *, mode: int | None, directory: bool, source: Path | None = None
) -> None:
    os.chown(target, uid, gid)
    if mode is not None:
        os.chmod(target, mode)
    elif source is not None:
        os.chmod(target, stat.S_IMODE(source.stat().st_mode))
    elif directory:
        os.chmod(target, 0o755)


def placeholders(upper: Path, lowers: Sequence[Path], rels: list[str]) -> list[Path]:
    """Empty files (and their directories) in ``upper`` for bind-mount targets the root lacks, so that
    the step's script can bind over them; the caller removes them afterwards (they must not ship)."""
    made: list[Path] = []
    for rel in rels:
        if exists_in(rel, [upper, *lowers]) is not None:
            continue
        parent_rel = os.path.dirname(rel)
        if parent_rel and not (upper / parent_rel).is_dir():
            if exists_in(parent_rel, lowers) is None:
                continue  # no /etc at all (scratch-like): nothing to bind onto
            ensure_dir(upper, lowers, parent_rel, None)
            made.append(upper / parent_rel)
        (upper / rel).touch()
        made.append(upper / rel)
    return made


def make_dir(upper: Path, lowers: Sequence[Path], step: MakeDir) -> None:
    rel = step.path.strip("/")
    ensure_dir(upper, lowers, rel, step.owner)
    if step.owner is not None and rel:
        os.chown(upper / rel, *step.owner)
