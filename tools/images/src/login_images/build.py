"""The builder: an :class:`~login_images.spec.ImageSpec` in, an OCI archive out, every intermediate
result cached (``cache.py``) under a key derived from everything that made it.

The chain of keys, each hashing the one before it::

    rootfs   suite, packages, apt sources, architecture          debootstrap + upgrade (minutes, once)
     |-- tools    + build packages                               apt-get install python3-pip (seconds)
     |-- base     + trim rules, users, the rootfs' build stamp   hard-link copy, trimmed; packed
     `-- layers   + the steps, the digest of the files they copy  chroot on an overlay; packed

so a source edit rebuilds the code layer only, a requirements edit the dependency layer and the code
layer, and ``--refresh-base`` (a new debootstrap: new stamp) everything. Packing is cached too (by the
layer's key, what it selects and the epoch), so a build with nothing changed only re-assembles the
archive: seconds.

Lowers: an image layer's steps see the base and the image layers below it, as in the final image; a
build layer's steps see the build root (untrimmed rootfs + tools) and the earlier layers of its build
stage, as a Dockerfile build stage does. Of a build layer only the captured paths ship, and only they
are in the view of the image layers above it.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from login_images import oci
from login_images.accounts import scratch_root, user_files
from login_images.cache import Cache, key_of, remove
from login_images.context import Ignore, digest
from login_images.errors import BuildError
from login_images.rootfs import (
    HOSTS,
    TRIM_EXCLUDE,
    TRIM_KEEP,
    Overlay,
    Runner,
    Sources,
    derived_sources,
    host_sources,
    link_farm,
    preflight,
    python_version,
)
from login_images.spec import Base, Copy, ImageSpec, Layer, MakeDir, Run, fingerprint
from login_images.steps import copy, make_dir, placeholders
from login_images.tarball import LayerBlob, Select, pack

# Bump to invalidate cached entries of one kind when the code that makes them changes meaning.
ROOTFS_VERSION = 1
BASE_VERSION = 1
STEPS_VERSION = 1
PACK_VERSION = 1
DEFAULT_EPOCH = 1704067200  # 2024-01-01T00:00:00Z, when SOURCE_DATE_EPOCH is not set


def epoch_from_env() -> int:
    value = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(value) if value.isdigit() else DEFAULT_EPOCH


@dataclass(frozen=True)
class LayerReport:
    name: str
    blob: LayerBlob
    built: bool  # its steps ran in this build (False: from the cache)
    seconds: float


@dataclass(frozen=True)
class Result:
    written: oci.Written
    layers: tuple[LayerReport, ...]
    python: str  # the base's python3 version, "" if none
    seconds: float

    def summary(self) -> str:
        mb = 1024 * 1024
        lines = [
            f"{self.written.name}: {self.written.uncompressed_size / mb:.1f} MB unpacked, "
            f"{self.written.size / mb:.1f} MB compressed, {len(self.layers)} layers, {self.seconds:.1f} s"
            + (f", Python {self.python}" if self.python else ""),
            f"  archive {self.written.path}  manifest {self.written.manifest_digest}",
            f"  image id {self.written.config_digest}",
        ]
        for layer in self.layers:
            state = f"built {layer.seconds:.1f} s" if layer.built else "cached"
            lines.append(
                f"  {layer.name:<14} {layer.blob.uncompressed_size / mb:8.1f} MB "
                f"({layer.blob.size / mb:.1f} MB gz, {layer.blob.entries} entries) {state}"
            )
        return "\n".join(lines)


@dataclass
class _Root:
    """A root filesystem a later step can stand on: its key and its directories, top first."""

    key: str
    lowers: list[Path] = field(default_factory=list)


@dataclass(frozen=True)
class _Rootfs:
    """The untrimmed Debian root (rootfs/<key>/root): its key, the stamp of its build, its Python."""

    root: Path | None = None  # None for a scratch base
    key: str = ""
    stamp: str = ""
    python: str = ""


@dataclass(frozen=True)
class _BaseLayer:
    image: _Root  # the trimmed root image steps stand on
    report: LayerReport
    created_by: str


class Builder:
    def __init__(
        self, cache: Cache, epoch: int, say: Callable[[str], None], refresh_base: bool = False
    ) -> None:
        self.cache = cache
        self.epoch = epoch
        self.say = say
        self.refresh_base = refresh_base
        self.runner = Runner(cache.logs, epoch, say)

    # --- the base --------------------------------------------------------------------------------------

    def _rootfs(self, base: Base) -> _Rootfs:
        """rootfs/<key>: debootstrap, apt sources with security updates, upgraded."""
        sources = host_sources(base.suite)
        key = key_of(
            fingerprint(
                "rootfs",
                ROOTFS_VERSION,
                base.suite,
                sorted(base.packages),
                sources.mirror,
                [(n, c.decode()) for n, c in sources.files],
                oci.architecture(),
            )
        )

        def make(tmp: Path) -> None:
            self.say(f"== base: debootstrap {base.suite} (minbase + {', '.join(base.packages) or 'nothing'})")
            root = tmp / "root"
            self.runner.debootstrap(root, base.suite, base.packages, sources.mirror)
            self._configure_sources(root, base.suite, sources)
            upgrade = Run(
                "apt-get update -qq && apt-get -y -qq upgrade && apt-get clean",
                env=(("DEBIAN_FRONTEND", "noninteractive"), ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")),
            )
            self.runner.run(
                f"apt-get upgrade {base.suite}", Overlay((root,), self.cache.scratch("mnt")), [upgrade]
            )
            (tmp / "stamp").write_text(uuid.uuid4().hex)

        path, made = self.cache.entry("rootfs", key, make, refresh=self.refresh_base)
        if not made:
            self.say(f"== base: rootfs {base.suite} cached ({path})")
        root = path / "root"
        python = python_version(root)
        if base.python and not python.startswith(base.python + "."):
            raise BuildError(
                f"{base.described_as}: Debian {base.suite} provides Python {python or 'none'}, "
                f"not {base.python} (pick the Debian suite that ships it, or change the base image)"
            )
        return _Rootfs(root, key, (path / "stamp").read_text(), python)

    def _configure_sources(self, root: Path, suite: str, sources: Sources) -> None:
        apt = root / "etc" / "apt"
        listed = apt / "sources.list"
        if sources.files:
            listed.unlink(missing_ok=True)
            for name, content in sources.files:
                (apt / "sources.list.d" / name).write_bytes(content)
        elif listed.exists():
            listed.write_bytes(derived_sources(listed.read_text(), suite))

    def _base(self, base: Base, rootfs: _Rootfs) -> _BaseLayer:
        """The base layer (packed) and the trimmed root later image steps stand on."""
        started = time.monotonic()
        key = key_of(
            fingerprint(
                "base", BASE_VERSION, base.kind, rootfs.key, rootfs.stamp, TRIM_EXCLUDE, TRIM_KEEP, base.users
            )
        )
        stage0 = rootfs.root

        def make(tmp: Path) -> None:
            root = tmp / "root"
            if stage0 is None:
                scratch_root(root, base.users)
            else:
                overrides = {"etc/hosts": HOSTS, **user_files(stage0, base.users)}
                link_farm(stage0, root, Select(exclude=TRIM_EXCLUDE, keep=TRIM_KEEP), overrides)

        path, made = self.cache.entry("base", key, make)
        root = path / "root"
        blob = self._pack(key, root, Select(), [])
        if stage0 is None:
            created_by = "scratch: /etc/passwd, /etc/group, /tmp"
        else:
            packages = f" + {', '.join(base.packages)}" if base.packages else ""
            created_by = (
                f"debootstrap --variant=minbase {base.suite}{packages}, trimmed ({base.described_as})"
            )
        report = LayerReport("base", blob, made, time.monotonic() - started)
        return _BaseLayer(_Root(key, [root]), report, created_by)

    def _tools(self, base: Base, rootfs: _Rootfs) -> _Root:
        """The build root: the untrimmed rootfs plus the build packages (an overlay upper)."""
        stage0 = rootfs.root
        if stage0 is None:
            raise BuildError(f"{base.described_as}: build stages need a Debian base")
        key = key_of(
            fingerprint("tools", STEPS_VERSION, rootfs.key, rootfs.stamp, sorted(base.build_packages))
        )
        if not base.build_packages:
            return _Root(key, [stage0])

        def make(tmp: Path) -> None:
            self.say(f"== build root: {', '.join(base.build_packages)}")
            upper = tmp / "upper"
            upper.mkdir(parents=True)
            install = Run(
                "apt-get install -y -qq --no-install-recommends "
                + " ".join(base.build_packages)
                + " && apt-get clean",
                env=(("DEBIAN_FRONTEND", "noninteractive"), ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")),
            )
            self._in_overlay("build root", [stage0], upper, [install])

        path, _ = self.cache.entry("tools", key, make)
        return _Root(key, [path / "upper", stage0])

    # --- layers ----------------------------------------------------------------------------------------

    def _in_overlay(self, name: str, lowers: Sequence[Path], upper: Path, runs: Sequence[Run]) -> None:
        made = placeholders(upper, lowers, ["etc/resolv.conf"])
        work = self.cache.scratch("work")
        mount = self.cache.scratch("mnt")
        try:
            self.runner.run(name, Overlay(tuple(lowers), mount, upper, work), runs)
        finally:
            for path in reversed(made):
                if path.is_dir():
                    if not any(path.iterdir()):
                        path.rmdir()
                elif path.exists() and path.stat().st_size == 0:
                    path.unlink()
            remove(work)
            remove(mount)

    def _steps(self, spec: ImageSpec, layer: Layer, below: _Root) -> tuple[str, Path, bool, float]:
        """steps/<key>/upper: what ``layer``'s steps change on top of ``below``."""
        ignore = Ignore(spec.ignore)
        inputs = [digest(spec.context, s.sources, ignore) for s in layer.steps if isinstance(s, Copy)]
        key = key_of(
            fingerprint("steps", STEPS_VERSION, below.key, layer.root, layer.steps, inputs, self.epoch)
        )
        started = time.monotonic()

        def make(tmp: Path) -> None:
            self.say(f"== layer {layer.name}: {layer.created_by[:150]}")
            upper = tmp / "upper"
            upper.mkdir(parents=True)
            for step in layer.steps:
                if isinstance(step, MakeDir):
                    make_dir(upper, below.lowers, step)
                elif isinstance(step, Copy):
                    copy(spec.context, ignore, step, upper, below.lowers)
            runs = [s for s in layer.steps if isinstance(s, Run)]
            if runs:
                self._in_overlay(f"layer {layer.name}", below.lowers, upper, runs)

        path, made = self.cache.entry("steps", key, make)
        return key, path / "upper", made, time.monotonic() - started

    def _pack(self, key: str, root: Path, select: Select, lowers: Sequence[Path]) -> LayerBlob:
        pack_key = key_of(fingerprint("pack", PACK_VERSION, key, select, self.epoch))
        record = self.cache.root / "packs" / f"{pack_key}.json"
        with self.cache.lock(f"pack-{pack_key}"):
            if record.exists():
                data = json.loads(record.read_text())
                blob = LayerBlob(**data)
                if (self.cache.blobs / blob.digest.split(":", 1)[1]).exists():
                    return blob
            blob = pack(root, self.cache.blobs, self.epoch, select, lowers)
            tmp = record.with_suffix(f".tmp-{os.getpid()}")
            tmp.write_text(json.dumps(blob.as_dict()))
            os.replace(tmp, record)
            return blob

    def _captured(self, key: str, upper: Path, capture: tuple[str, ...]) -> Path:
        """What a build layer ships, as a directory (the lower of image steps above it)."""
        capture_key = key_of(fingerprint("captured", key, capture))

        def make(tmp: Path) -> None:
            link_farm(upper, tmp / "root", Select(include=capture), {})

        path, _ = self.cache.entry("steps", capture_key, make)
        return path / "root"

    # --- the image -------------------------------------------------------------------------------------

    def build(self, spec: ImageSpec, name: str, output: Path) -> Result:
        started = time.monotonic()
        preflight(debian=spec.base.kind == "debian")
        self.say(f"== {name} from {spec.source}")
        rootfs = self._rootfs(spec.base) if spec.base.kind == "debian" else _Rootfs()
        base = self._base(spec.base, rootfs)
        image = base.image
        reports = [base.report]
        created = [base.created_by]
        build_roots: dict[str, _Root] = {}
        for layer in spec.layers:
            if layer.root == "build":
                below = build_roots.get(layer.chain) or self._tools(spec.base, rootfs)
                key, upper, made, seconds = self._steps(spec, layer, below)
                build_roots[layer.chain] = _Root(key, [upper, *below.lowers])
                blob = self._pack(key, upper, Select(include=layer.capture), below.lowers)
                shipped = self._captured(key, upper, layer.capture)
                image = _Root(key_of(fingerprint(image.key, key, layer.capture)), [shipped, *image.lowers])
            else:
                key, upper, made, seconds = self._steps(spec, layer, image)
                blob = self._pack(key, upper, Select(), image.lowers)
                image = _Root(key, [upper, *image.lowers])
            reports.append(LayerReport(layer.name, blob, made, seconds))
            created.append(layer.created_by or layer.name)
        oci_image = oci.Image(
            name=name,
            config=spec.config,
            layers=tuple(oci.Layer(r.blob, c) for r, c in zip(reports, created, strict=True)),
            epoch=self.epoch,
            annotations=spec.annotations,
        )
        written = oci.write_archive(oci_image, self.cache.blobs, output)
        return Result(written, tuple(reports), rootfs.python, time.monotonic() - started)
