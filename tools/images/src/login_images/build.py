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
import re
import shutil
import stat
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from login_images import oci
from login_images.cache import Cache, key_of, remove
from login_images.context import Ignore, digest, files
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
)
from login_images.spec import Base, Copy, ImageSpec, Layer, MakeDir, Run, User, fingerprint
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


class Builder:
    def __init__(
        self, cache: Cache, epoch: int, say: Callable[[str], None], refresh_base: bool = False
    ) -> None:
        self.cache = cache
        self.epoch = epoch
        self.say = say
        self.refresh_base = refresh_base
        self.runner = Runner(cache.logs, epoch, say)
        self._created_by: dict[str, str] = {}

    # --- the base --------------------------------------------------------------------------------------

    def _rootfs(self, base: Base) -> tuple[Path, dict[str, str]]:
        """rootfs/<key>: debootstrap, apt sources with security updates, upgraded. Returns (root, meta)."""
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
        python = _python_version(root)
        if base.python and not python.startswith(base.python + "."):
            raise BuildError(
                f"{base.described_as}: Debian {base.suite} provides Python {python or 'none'}, "
                f"not {base.python} (pick the Debian suite that ships it, or change the base image)"
            )
        return root, {"stamp": (path / "stamp").read_text(), "python": python, "key": key}

    def _configure_sources(self, root: Path, suite: str, sources: Sources) -> None:
        apt = root / "etc" / "apt"
        listed = apt / "sources.list"
        if sources.files:
            listed.unlink(missing_ok=True)
            for name, content in sources.files:
                (apt / "sources.list.d" / name).write_bytes(content)
        elif listed.exists():
            listed.write_bytes(derived_sources(listed.read_text(), suite))

    def _base(self, base: Base) -> tuple[_Root, LayerReport, Path | None, dict[str, str]]:
        """The base layer (packed) and the trimmed root later image steps stand on."""
        started = time.monotonic()
        stage0: Path | None = None
        meta: dict[str, str] = {"stamp": "", "python": "", "key": ""}
        if base.kind == "debian":
            stage0, meta = self._rootfs(base)
        key = key_of(
            fingerprint(
                "base",
                BASE_VERSION,
                base.kind,
                meta["key"],
                meta["stamp"],
                TRIM_EXCLUDE,
                TRIM_KEEP,
                base.users,
            )
        )

        def make(tmp: Path) -> None:
            root = tmp / "root"
            if stage0 is None:
                _scratch_root(root, base.users)
            else:
                overrides = {"etc/hosts": HOSTS, **_user_files(stage0, base.users)}
                link_farm(stage0, root, Select(exclude=TRIM_EXCLUDE, keep=TRIM_KEEP), overrides)

        path, made = self.cache.entry("base", key, make)
        root = path / "root"
        blob = self._pack(key, root, Select(), [])
        where = "scratch" if stage0 is None else f"debootstrap {base.suite}"
        extra = f" + {', '.join(base.packages)}" if base.packages else ""
        report = LayerReport("base", blob, made, time.monotonic() - started)
        self._created_by["base"] = f"{where} --variant=minbase{extra}, trimmed ({base.described_as})"
        return _Root(key, [root]), report, stage0, meta

    def _tools(self, base: Base, stage0: Path, meta: dict[str, str]) -> _Root:
        """The build root: the untrimmed rootfs plus the build packages (an overlay upper)."""
        key = key_of(
            fingerprint("tools", STEPS_VERSION, meta["key"], meta["stamp"], sorted(base.build_packages))
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
        placeholders = _placeholders(upper, lowers, ["etc/resolv.conf"])
        work = self.cache.scratch("work")
        mount = self.cache.scratch("mnt")
        try:
            self.runner.run(name, Overlay(tuple(lowers), mount, upper, work), runs)
        finally:
            for path in reversed(placeholders):
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
                    _ensure_dir(upper, below.lowers, step.path.strip("/"), step.owner)
                    if step.owner is not None and step.path.strip("/"):
                        os.chown(upper / step.path.strip("/"), *step.owner)
                elif isinstance(step, Copy):
                    _copy(spec.context, ignore, step, upper, below.lowers)
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
        image, base_report, stage0, meta = self._base(spec.base)
        reports = [base_report]
        created = [self._created_by["base"]]
        build_roots: dict[str, _Root] = {}
        for layer in spec.layers:
            if layer.root == "build":
                if stage0 is None:
                    raise BuildError(f"{spec.source}: build layers need a Debian base")
                below = build_roots.get(layer.chain) or self._tools(spec.base, stage0, meta)
                key, upper, made, seconds = self._steps(spec, layer, below)
                build_roots[layer.chain] = _Root(key, [upper, *below.lowers])
                select = Select(include=layer.capture)
                blob = self._pack(key, upper, select, below.lowers)
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
        return Result(written, tuple(reports), meta["python"], time.monotonic() - started)


# --- helpers -------------------------------------------------------------------------------------------


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


def _python_version(root: Path) -> str:
    """The upstream version of the root's python3 (``3.11.2`` of Debian's ``3.11.2-6+deb12u9``)."""
    versions = dpkg_versions(root)
    minors = sorted(p for p in versions if re.fullmatch(r"python3\.\d+", p))
    if not minors:
        return ""
    match = re.match(r"(?:\d+:)?([\d.]+)", versions[minors[-1]])
    return match[1] if match else ""


def _exists(rel: str, roots: Sequence[Path]) -> Path | None:
    for root in roots:
        path = root / rel
        if path.exists() or path.is_symlink():
            return path
    return None


def _ensure_dir(upper: Path, lowers: Sequence[Path], rel: str, owner: tuple[int, int] | None) -> None:
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
        below = _exists(sub, lowers)
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


def _copy(context: Path, ignore: Ignore, step: Copy, upper: Path, lowers: Sequence[Path]) -> None:
    """Docker's COPY into ``upper``: a directory's contents into ``dest``; a file to ``dest`` (or into it
    when it ends with "/" or several sources are copied). Owner 0:0 unless ``step.owner``."""
    uid, gid = step.owner or (0, 0)
    dest = step.dest.rstrip("/").lstrip("/")
    into = step.dest.endswith("/") or len(step.sources) > 1
    for source in step.sources:
        entries = list(files(context, source, ignore))
        top_rel, top = entries[0]
        if top.is_dir() and not top.is_symlink():
            _ensure_dir(upper, lowers, dest, step.owner)
            _own(upper / dest, uid, gid, mode=step.mode, directory=True)
            for rel, path in entries[1:]:
                _place(path, upper / dest / os.path.relpath(rel, top_rel), uid, gid, step.mode)
        else:
            target_rel = f"{dest}/{top.name}" if into else dest
            _ensure_dir(upper, lowers, os.path.dirname(target_rel), None)
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


def _placeholders(upper: Path, lowers: Sequence[Path], rels: list[str]) -> list[Path]:
    """Empty files (and their directories) in ``upper`` for bind-mount targets the root lacks, so that
    the step's script can bind over them; the caller removes them afterwards (they must not ship)."""
    made: list[Path] = []
    for rel in rels:
        if _exists(rel, [upper, *lowers]) is not None:
            continue
        parent_rel = os.path.dirname(rel)
        if parent_rel and not (upper / parent_rel).is_dir():
            if _exists(parent_rel, lowers) is None:
                continue  # no /etc at all (scratch-like): nothing to bind onto
            _ensure_dir(upper, lowers, parent_rel, None)
            made.append(upper / parent_rel)
        (upper / rel).touch()
        made.append(upper / rel)
    return made


def _passwd_lines(users: Sequence[User], groups_present: Sequence[str] = ()) -> tuple[str, str, str, str]:
    """Lines for passwd, group, shadow, gshadow; groups whose name or gid is present are not repeated."""
    passwd = "".join(f"{u.name}:x:{u.uid}:{u.gid}::{u.home}:{u.shell}\n" for u in users)
    groups: dict[int, str] = {}
    for user in users:
        name = user.group or user.name
        if user.gid not in groups and name not in groups_present and str(user.gid) not in groups_present:
            groups[user.gid] = name
    group = "".join(f"{name}:x:{gid}:\n" for gid, name in groups.items())
    shadow = "".join(f"{u.name}:!:::::::\n" for u in users)
    gshadow = "".join(f"{name}:!::\n" for name in groups.values())
    return passwd, group, shadow, gshadow


def _present(text: str) -> list[str]:
    """Names and ids of the accounts of a passwd or group file."""
    out = []
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) > 2:
            out += [fields[0], fields[2]]
    return out


def _user_files(root: Path, users: Sequence[User]) -> dict[str, bytes]:
    """/etc/passwd, group (and shadow, gshadow when present) of ``root`` with ``users`` appended."""
    if not users:
        return {}
    passwd_file, group_file = root / "etc" / "passwd", root / "etc" / "group"
    accounts = _present(passwd_file.read_text()) if passwd_file.exists() else []
    for user in users:
        if user.name in accounts[0::2] or str(user.uid) in accounts[1::2]:
            raise BuildError(f"user {user.name} ({user.uid}): the base already has that name or uid")
    groups_present = _present(group_file.read_text()) if group_file.exists() else []
    out = {}
    lines = _passwd_lines(users, groups_present)
    for rel, extra in zip(("etc/passwd", "etc/group", "etc/shadow", "etc/gshadow"), lines, strict=True):
        path = root / rel
        if path.exists():
            out[rel] = path.read_bytes() + extra.encode()
    return out


def _scratch_root(root: Path, users: Sequence[User]) -> None:
    """An empty root: /etc with passwd and group (root and ``users``), /tmp (1777)."""
    (root / "etc").mkdir(parents=True)
    (root / "tmp").mkdir()
    os.chmod(root / "tmp", 0o1777)
    os.chmod(root / "etc", 0o755)
    os.chmod(root, 0o755)
    passwd, group, _, _ = _passwd_lines(users, ["root", "0"])
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/sbin/nologin\n" + passwd)
    (root / "etc" / "group").write_text("root:x:0:\n" + group)
    os.chmod(root / "etc" / "passwd", 0o644)
    os.chmod(root / "etc" / "group", 0o644)
