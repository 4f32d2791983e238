"""The build context: which files a ``Copy`` takes (``.dockerignore`` rules) and a digest of them.

The digest is what makes the layer cache correct: a layer's key includes the digest of every file its
``Copy`` steps take (path, type, mode, content or link target), so editing one source file rebuilds the
code layer and nothing below it, while touching a file (mtime only) rebuilds nothing.

``.dockerignore`` as Docker reads it: one pattern a line, ``#`` comments, ``!`` re-includes, ``**``
matches any number of directories, the last matching line wins, and a pattern that matches a directory
excludes everything under it.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path

from login_images.errors import SpecError


def read_ignore(context: Path) -> tuple[str, ...]:
    path = context / ".dockerignore"
    if not path.is_file():
        return ()
    lines = (ln.strip() for ln in path.read_text().splitlines())
    return tuple(ln for ln in lines if ln and not ln.startswith("#"))


def _regex(pattern: str) -> re.Pattern[str]:
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + "$")


class Ignore:
    """``Ignore(patterns).excluded("a/b/c")``: True when the last pattern matching the path (or one of
    its parent directories) is not a ``!`` pattern."""

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self._rules = []
        for raw in patterns:
            negate = raw.startswith("!")
            text = os.path.normpath(raw.removeprefix("!").strip()).lstrip("/")
            self._rules.append((negate, _regex(text)))

    def excluded(self, rel: str) -> bool:
        parts = rel.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        result = False
        for negate, regex in self._rules:
            if any(regex.match(p) for p in prefixes):
                result = not negate
        return result


def files(context: Path, source: str, ignore: Ignore) -> Iterator[tuple[str, Path]]:
    """(path relative to the context, absolute path) of every entry a COPY of ``source`` takes, sorted,
    directories before their contents; the source itself first."""
    rel = os.path.normpath(source).lstrip("/")
    if rel.startswith(".."):
        raise SpecError(f"COPY {source}: outside the build context")
    top = context / rel
    if not top.exists() and not top.is_symlink():
        raise SpecError(f"COPY {source}: no such file in the build context {context}")
    if rel != "." and ignore.excluded(rel):
        raise SpecError(f"COPY {source}: excluded by .dockerignore")
    yield rel, top
    if top.is_dir() and not top.is_symlink():
        yield from _walk(context, top, ignore)


def _walk(context: Path, directory: Path, ignore: Ignore) -> Iterator[tuple[str, Path]]:
    for name in sorted(os.listdir(directory)):
        path = directory / name
        rel = path.relative_to(context).as_posix()
        if ignore.excluded(rel):
            continue
        yield rel, path
        if path.is_dir() and not path.is_symlink():
            yield from _walk(context, path, ignore)


def digest(context: Path, sources: tuple[str, ...], ignore: Ignore) -> str:
    """sha256 over what the sources take: relative path, kind, permission bits, content / link target."""
    h = hashlib.sha256()
    for source in sources:
        h.update(f"source {source}\n".encode())
        for rel, path in files(context, source, ignore):
            st = path.lstat()
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                h.update(f"L {rel} {os.readlink(path)}\n".encode())
            elif stat.S_ISDIR(st.st_mode):
                h.update(f"D {rel} {mode:o}\n".encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(f"F {rel} {mode:o} {st.st_size}\n".encode())
                with path.open("rb") as f:
                    for chunk in iter(lambda: f.read(1 << 20), b""):
                        h.update(chunk)
            else:
                raise SpecError(f"COPY {source}: {rel} is neither a file, a directory nor a link")
    return h.hexdigest()
