"""What an image is made of, whoever described it: the Dockerfile front end (``dockerfile.py``) and the
TOML front end (``tomlspec.py``) both produce an :class:`ImageSpec`, and the builder knows nothing else.

An image is a base (a Debian root filesystem from debootstrap, or ``scratch``), then layers. A layer is
an ordered list of steps (copy files in, make a directory, run a command in a chroot) applied on top of
what lies below it, and what the steps change is the layer:

* ``root="image"``: the steps run on the image itself (lower layers + base); everything they change ships.
* ``root="build"``: the steps run in a build root (the base's untrimmed root filesystem plus
  ``Base.build_packages``, then the earlier layers of the same ``chain``), as a Dockerfile build stage
  does; only the paths in ``capture`` ship (``COPY --from=build /opt/venv /opt/venv``).

Everything here is frozen and hashable: the cache keys are derived from these values
(:func:`fingerprint`), so a change to any field rebuilds exactly the layers it affects.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from login_images.errors import SpecError

Pairs = tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class User:
    """An account written into /etc/passwd and /etc/group (and shadow files, when the base has them)."""

    name: str
    uid: int
    gid: int
    group: str = ""  # default: the user's name
    home: str = "/nonexistent"
    shell: str = "/usr/sbin/nologin"


@dataclass(frozen=True)
class Base:
    """``kind="debian"``: ``debootstrap --variant=minbase --include=<packages> <suite>``, trimmed.
    ``kind="scratch"``: an empty root with /etc/passwd, /etc/group and /tmp only."""

    kind: Literal["debian", "scratch"]
    suite: str = ""
    packages: tuple[str, ...] = ()
    build_packages: tuple[str, ...] = ()
    python: str = ""  # "3.11": the suite must provide /usr/bin/python3.11 (checked after debootstrap)
    env: Pairs = ()
    users: tuple[User, ...] = ()
    described_as: str = ""  # what the spec named, e.g. "python:3.11-slim-bookworm"


@dataclass(frozen=True)
class Copy:
    """Files from the build context: a directory's contents, or a file (to ``dest`` itself, or into it
    when ``dest`` ends with "/" or there are several sources). ``owner``/``mode`` override the files'."""

    sources: tuple[str, ...]
    dest: str
    owner: tuple[int, int] | None = None
    mode: int | None = None


@dataclass(frozen=True)
class MakeDir:
    """``mkdir -p``: new directories are 0755, owned by ``owner`` (root if None), as is ``path`` itself."""

    path: str
    owner: tuple[int, int] | None = None


@dataclass(frozen=True)
class Run:
    """A command in a chroot: ``/bin/sh -c command`` (``shell``), else ``command`` is a JSON argv."""

    command: str
    env: Pairs = ()
    workdir: str = "/"
    user: str = ""  # "uid[:gid]"; "" = root
    shell: bool = True


Step = Copy | MakeDir | Run


@dataclass(frozen=True)
class Layer:
    name: str
    steps: tuple[Step, ...]
    root: Literal["image", "build"] = "image"
    capture: tuple[str, ...] = ()
    chain: str = ""  # build layers: the build stage they belong to
    created_by: str = ""  # the history entry of the image config


@dataclass(frozen=True)
class Config:
    """The OCI image config's ``config`` object."""

    user: str = ""
    env: Pairs = ()
    workdir: str = ""
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    exposed_ports: tuple[str, ...] = ()
    labels: Pairs = ()
    stop_signal: str = ""


@dataclass(frozen=True)
class ImageSpec:
    base: Base
    layers: tuple[Layer, ...]
    config: Config
    context: Path
    ignore: tuple[str, ...] = ()  # .dockerignore patterns for Copy sources
    source: str = ""  # where it came from, for messages and the manifest's annotations
    annotations: Pairs = field(default=())

    def __post_init__(self) -> None:
        runs = [s for layer in self.layers for s in layer.steps if isinstance(s, Run)]
        if self.base.kind == "scratch" and runs:
            raise SpecError(f"{self.source}: a scratch base has no shell to RUN {runs[0].command!r} in")
        for layer in self.layers:
            if layer.root == "build" and not layer.capture:
                raise SpecError(f"{self.source}: build layer {layer.name} captures no path")


def as_jsonable(value: Any) -> Any:
    """Dataclasses, tuples and paths as plain JSON values (for fingerprints and messages)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: as_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return {"type": type(value).__name__, **fields}
    if isinstance(value, tuple | list):
        return [as_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def fingerprint(*parts: Any) -> str:
    """A stable text for hashing: canonical JSON of the parts."""
    return json.dumps(as_jsonable(list(parts)), sort_keys=True, separators=(",", ":"))


def parse_owner(text: str, where: str) -> tuple[int, int]:
    """``"10001:10001"`` or ``"10001"`` (gid = uid). Names would need the image's /etc/passwd: refused."""
    uid, _, gid = text.partition(":")
    if not uid.isdigit() or (gid and not gid.isdigit()):
        raise SpecError(f"{where}: owner {text!r} must be numeric (uid[:gid])")
    return int(uid), int(gid or uid)
