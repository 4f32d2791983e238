"""Deterministic layer tarballs: a directory tree in, a gzip-compressed OCI layer blob out, with its
diff_id (sha256 of the uncompressed tar) and digest (sha256 of the blob) computed while it is written.

Same tree, same bytes:

* entries in path order, each directory before its contents (a sorted depth-first walk);
* every mtime is the build's epoch (``SOURCE_DATE_EPOCH`` or the builder's fixed default); numeric
  owners as on disk (root everywhere except what a step chowned, e.g. the dev stage's /app), no user or
  group names, no extended attributes (file capabilities and ACLs are not carried);
* hard links within the layer become tar hard links to the first path in that order;
* PAX format; gzip at level 6 with mtime 0 and no file name in its header.

Python byte code: a timestamp ``.pyc`` records its source's mtime, which the fixed epoch would make
stale (Python would then recompile at every start, and cannot cache on a read-only root). Such a pyc,
when its source is found and its magic number is this interpreter's, is rewritten as a *checked-hash*
pyc (PEP 552: flags 0b11 and the source's SipHash in place of mtime and size) — valid whatever the
mtime. pip already writes checked-hash pycs because the builder sets ``SOURCE_DATE_EPOCH``.

Overlay upper directories are packed as OCI layers: a whiteout (character device 0:0) becomes a
``.wh.<name>`` entry, an opaque directory (``trusted.overlay.opaque=y``) gets ``.wh..wh..opq``.
Sockets, FIFOs and other device nodes are left out.

``Select`` decides what a tree contributes: ``include`` limits it to some paths (and their parent
directories: a build layer's ``capture``), ``exclude`` drops paths and everything under them (the base's
trim rules), ``keep`` rescues paths from ``exclude`` (``/usr/share/doc/*/copyright``).
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import os
import stat
import tarfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import IO, TYPE_CHECKING, cast

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

GZIP_LEVEL = 6
PYC_MAGIC = importlib.util.MAGIC_NUMBER
OPAQUE_XATTR = "trusted.overlay.opaque"


@dataclass(frozen=True)
class Select:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()

    def _matches(self, rel: str, patterns: tuple[str, ...]) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        return any(fnmatchcase(p, pat.strip("/")) for pat in patterns for p in prefixes)

    def in_scope(self, rel: str) -> bool:
        """Is ``rel`` an included path, under one, or a parent directory of one?"""
        if not self.include:
            return True
        for path in (p.strip("/") for p in self.include):
            if rel == path or rel.startswith(path + "/") or path.startswith(rel + "/"):
                return True
        return False

    def dropped(self, rel: str) -> bool:
        return self._matches(rel, self.exclude) and not self._matches(rel, self.keep)

    def rescues_below(self, rel: str) -> bool:
        """Could a ``keep`` pattern match something under ``rel``? (Then an excluded directory is
        walked, and kept only if something under it is.) Patterns compared segment by segment."""
        parts = rel.split("/")
        for pattern in self.keep:
            segments = pattern.strip("/").split("/")
            if len(segments) > len(parts) and all(map(fnmatchcase, parts, segments)):
                return True
        return False


@dataclass(frozen=True)
class LayerBlob:
    diff_id: str  # "sha256:..." of the tar
    digest: str  # "sha256:..." of the gzip blob
    size: int  # bytes of the blob
    uncompressed_size: int
    entries: int

    def as_dict(self) -> dict[str, str | int]:
        return {
            "diff_id": self.diff_id,
            "digest": self.digest,
            "size": self.size,
            "uncompressed_size": self.uncompressed_size,
            "entries": self.entries,
        }


@dataclass(frozen=True)
class Entry:
    """One path of a tree as a pack takes it (``whiteout``/``opaque``: overlay markers)."""

    rel: str
    path: Path
    st: os.stat_result
    whiteout: bool = False
    opaque: bool = False


def walk(root: Path, select: Select) -> list[Entry]:
    """What ``select`` takes from ``root``, in pack order (a sorted depth-first walk)."""
    out: list[Entry] = []

    def visit(directory: Path, prefix: str) -> bool:
        """Append the entries under ``directory``; True when at least one was appended."""
        added = False
        try:
            names = sorted(os.listdir(directory))
        except FileNotFoundError:
            return False
        for name in names:
            rel = f"{prefix}{name}"
            path = directory / name
            if not select.in_scope(rel):
                continue
            st = path.lstat()
            is_dir = stat.S_ISDIR(st.st_mode)
            dropped = select.dropped(rel)
            if dropped and not (is_dir and select.rescues_below(rel)):
                continue
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == 0:
                out.append(Entry(rel, path, st, whiteout=True))
                added = True
                continue
            if not (is_dir or stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode)):
                continue  # sockets, FIFOs, device nodes
            if not is_dir:
                out.append(Entry(rel, path, st))
                added = True
                continue
            mark = len(out)
            out.append(Entry(rel, path, st, opaque=_opaque(path)))
            below = visit(path, rel + "/")
            if dropped and not below:
                del out[mark:]  # an excluded directory nothing under it was kept from
                continue
            added = True
        return added

    visit(root, "")
    return out


def _opaque(path: Path) -> bool:
    try:
        return os.getxattr(path, OPAQUE_XATTR, follow_symlinks=False) == b"y"
    except OSError:
        return False


def _source_of(pyc_rel: str) -> str | None:
    """``a/__pycache__/b.cpython-311.pyc`` -> ``a/b.py``."""
    directory, _, name = pyc_rel.rpartition("/")
    parent, _, cache = directory.rpartition("/")
    if cache != "__pycache__" and directory != "__pycache__":
        return None
    if directory == "__pycache__":
        parent = ""
    module = name.split(".", 1)[0]
    return f"{parent}/{module}.py" if parent else f"{module}.py"


def hash_pyc(data: bytes, source: bytes) -> bytes:
    """A timestamp pyc as a checked-hash pyc of ``source`` (PEP 552); unchanged if not applicable."""
    if len(data) < 16 or data[:4] != PYC_MAGIC or int.from_bytes(data[4:8], "little") != 0:
        return data
    return data[:4] + (0b11).to_bytes(4, "little") + importlib.util.source_hash(source) + data[16:]


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to ``sink``."""

    def __init__(self, sink: IO[bytes]) -> None:
        super().__init__()
        self.sink = sink
        self.sha = hashlib.sha256()
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer) -> int:
        view = bytes(data)
        self.sha.update(view)
        self.count += len(view)
        self.sink.write(view)
        return len(view)

    def as_io(self) -> IO[bytes]:
        return cast(IO[bytes], self)


def _read_source(rel: str, roots: Sequence[Path]) -> bytes | None:
    for root in roots:
        path = root / rel
        if path.is_file():
            return path.read_bytes()
    return None


def _tarinfo(entry: Entry, name: str, epoch: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = epoch
    info.mode = stat.S_IMODE(entry.st.st_mode)
    info.uid = entry.st.st_uid
    info.gid = entry.st.st_gid
    info.uname = info.gname = ""
    return info


def entries(root: Path, select: Select) -> Iterator[str]:
    """The paths a pack of ``root`` would contain (whiteouts by their real name), for tests and reports."""
    for entry in walk(root, select):
        yield entry.rel


def pack(
    root: Path,
    blob_dir: Path,
    epoch: int,
    select: Select = Select(),
    sources: Sequence[Path] = (),
) -> LayerBlob:
    """Pack ``root`` into ``blob_dir/<hex digest>``. ``sources``: further roots (the layers below) in
    which a pyc's source is looked up when ``root`` lacks it."""
    blob_dir.mkdir(parents=True, exist_ok=True)
    tmp = blob_dir / f".tmp-{os.getpid()}-{id(root)}"
    roots = [root, *sources]
    seen_inodes: dict[tuple[int, int], str] = {}
    count = 0
    with tmp.open("wb") as raw:
        blob = _Hashing(raw)
        gz = gzip.GzipFile(filename="", mode="wb", fileobj=blob.as_io(), compresslevel=GZIP_LEVEL, mtime=0)
        with gz:
            tar_stream = _Hashing(cast(IO[bytes], gz))
            with tarfile.open(fileobj=tar_stream.as_io(), mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for entry in walk(root, select):
                    count += 1
                    _add(tar, entry, epoch, roots, seen_inodes)
    digest = "sha256:" + blob.sha.hexdigest()
    final = blob_dir / digest.split(":", 1)[1]
    os.replace(tmp, final)
    return LayerBlob(
        diff_id="sha256:" + tar_stream.sha.hexdigest(),
        digest=digest,
        size=blob.count,
        uncompressed_size=tar_stream.count,
        entries=count,
    )


def _add(
    tar: tarfile.TarFile,
    entry: Entry,
    epoch: int,
    roots: Sequence[Path],
    seen_inodes: dict[tuple[int, int], str],
) -> None:
    mode = entry.st.st_mode
    if entry.whiteout:
        parent, _, name = entry.rel.rpartition("/")
        info = _tarinfo(entry, f"{parent}/.wh.{name}" if parent else f".wh.{name}", epoch)
        info.mode, info.uid, info.gid = 0o600, 0, 0
        tar.addfile(info, io.BytesIO(b""))
        return
    info = _tarinfo(entry, entry.rel, epoch)
    if stat.S_ISDIR(mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
        if entry.opaque:
            marker = _tarinfo(entry, f"{entry.rel}/.wh..wh..opq", epoch)
            marker.mode, marker.uid, marker.gid = 0o600, 0, 0
            tar.addfile(marker, io.BytesIO(b""))
        return
    if stat.S_ISLNK(mode):
        info.type = tarfile.SYMTYPE
        info.linkname = os.readlink(entry.path)
        tar.addfile(info)
        return
    inode = (entry.st.st_dev, entry.st.st_ino)
    if entry.st.st_nlink > 1:
        if inode in seen_inodes:
            info.type = tarfile.LNKTYPE
            info.linkname = seen_inodes[inode]
            tar.addfile(info)
            return
        seen_inodes[inode] = entry.rel
    if entry.rel.endswith(".pyc"):
        data = entry.path.read_bytes()
        source_rel = _source_of(entry.rel)
        source = _read_source(source_rel, roots) if source_rel else None
        if source is not None:
            data = hash_pyc(data, source)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        return
    info.size = entry.st.st_size
    with entry.path.open("rb") as f:
        tar.addfile(info, f)
