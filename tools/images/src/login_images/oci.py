"""OCI image layout, packed as an archive (``oci-archive``), and its verification.

The archive is a tar of an OCI image layout (image-spec v1.1 ``image-layout.md``)::

    oci-layout                      {"imageLayoutVersion": "1.0.0"}
    index.json                      one manifest descriptor: platform, the image's name as
                                    io.containerd.image.name and its tag as org.opencontainers.image.ref.name
    manifest.json                   the same image for `docker load` / `podman load` (RepoTags)
    blobs/sha256/<config>           the image config: rootfs.diff_ids, history, config (user, env, ...)
    blobs/sha256/<manifest>         config + layer descriptors (application/vnd.oci.image.layer.v1.tar+gzip)
    blobs/sha256/<layer>...         the layers, base first

JSON documents are canonical (sorted keys, no spaces) and the archive is packed like a layer (sorted,
fixed mtime, root-owned), so the same layers and config give the same archive bytes, the same manifest
digest and the same image ID. ``ctr images import`` (containerd 1.6) reads ``oci-layout`` + ``index.json``
and names the image from ``io.containerd.image.name`` exactly as written: a name whose first component has
no dot or colon (``login-producer:dev``) is not what a kubelet looks up for such an image (it completes
short names with the default registry), so the Makefile names local images ``localhost/<name>`` and the
chart is installed with ``image.registry=localhost``.

:func:`verify` re-reads an archive and checks every claim: each blob's sha256 and size against its
descriptor, each layer's uncompressed sha256 against the config's ``diff_ids`` (in order), the
platform, and that manifest.json names the same config and layers.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, cast

from login_images.errors import ArchiveError
from login_images.spec import Config
from login_images.tarball import LayerBlob

LAYOUT_VERSION = "1.0.0"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
NAME_ANNOTATION = "io.containerd.image.name"
REF_ANNOTATION = "org.opencontainers.image.ref.name"
ARCHITECTURES = {
    "x86_64": "amd64",
    "aarch64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
}


def canonical(document: Any) -> bytes:
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def architecture() -> str:
    machine = os.uname().machine
    return ARCHITECTURES.get(machine, machine)


def timestamp(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Layer:
    blob: LayerBlob
    created_by: str


@dataclass(frozen=True)
class Image:
    """What goes into an archive: the blobs are read from ``blob_dir``."""

    name: str  # full reference, e.g. localhost/login-producer:dev
    config: Config
    layers: tuple[Layer, ...]
    epoch: int
    annotations: tuple[tuple[str, str], ...] = ()

    def config_document(self) -> dict[str, Any]:
        c = self.config
        inner: dict[str, Any] = {}
        if c.user:
            inner["User"] = c.user
        if c.env:
            inner["Env"] = [f"{k}={v}" for k, v in c.env]
        if c.entrypoint is not None:
            inner["Entrypoint"] = list(c.entrypoint)
        if c.cmd is not None:
            inner["Cmd"] = list(c.cmd)
        if c.workdir:
            inner["WorkingDir"] = c.workdir
        if c.exposed_ports:
            inner["ExposedPorts"] = {p: {} for p in c.exposed_ports}
        if c.labels:
            inner["Labels"] = dict(c.labels)
        if c.stop_signal:
            inner["StopSignal"] = c.stop_signal
        created = timestamp(self.epoch)
        return {
            "architecture": architecture(),
            "os": "linux",
            "created": created,
            "config": inner,
            "rootfs": {"type": "layers", "diff_ids": [layer.blob.diff_id for layer in self.layers]},
            "history": [{"created": created, "created_by": layer.created_by} for layer in self.layers],
        }


@dataclass(frozen=True)
class Written:
    path: Path
    name: str
    manifest_digest: str
    config_digest: str  # the image ID
    size: int  # compressed layers
    uncompressed_size: int


def _split_name(name: str) -> tuple[str, str]:
    """``host/repo:tag`` -> (``host/repo``, ``tag``); no tag -> ``latest``."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), epoch, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, epoch, 0o755
    tar.addfile(info)


def hexes(digest: str) -> str:
    """``sha256:abc`` -> ``abc`` (the blob's file name)."""
    return digest.split(":", 1)[1]


def write_archive(image: Image, blob_dir: Path, path: Path) -> Written:
    config = canonical(image.config_document())
    config_digest = sha256(config)
    config_desc: dict[str, Any] = {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config)}
    layer_descs = [
        {"mediaType": MEDIA_LAYER, "digest": layer.blob.digest, "size": layer.blob.size}
        for layer in image.layers
    ]
    manifest_doc: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config_desc,
        "layers": layer_descs,
    }
    if image.annotations:
        manifest_doc["annotations"] = dict(image.annotations)
    manifest = canonical(manifest_doc)
    _, tag = _split_name(image.name)
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": MEDIA_INDEX,
            "manifests": [
                {
                    "mediaType": MEDIA_MANIFEST,
                    "digest": sha256(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": architecture(), "os": "linux"},
                    "annotations": {NAME_ANNOTATION: image.name, REF_ANNOTATION: tag},
                }
            ],
        }
    )
    docker = canonical(
        [
            {
                "Config": f"blobs/sha256/{hexes(config_digest)}",
                "RepoTags": [image.name],
                "Layers": [f"blobs/sha256/{hexes(layer.blob.digest)}" for layer in image.layers],
            }
        ]
    )
    blobs: dict[str, bytes | Path] = {hexes(sha256(config)): config, hexes(sha256(manifest)): manifest}
    for layer in image.layers:
        blobs[hexes(layer.blob.digest)] = blob_dir / hexes(layer.blob.digest)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
        _add_dir(tar, "blobs", image.epoch)
        _add_dir(tar, "blobs/sha256", image.epoch)
        for hex_digest in sorted(blobs):
            content = blobs[hex_digest]
            if isinstance(content, bytes):
                _add_bytes(tar, f"blobs/sha256/{hex_digest}", content, image.epoch)
                continue
            info = tarfile.TarInfo(f"blobs/sha256/{hex_digest}")
            info.size, info.mtime, info.mode = content.stat().st_size, image.epoch, 0o644
            with content.open("rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, "index.json", index, image.epoch)
        _add_bytes(tar, "manifest.json", docker, image.epoch)
        _add_bytes(tar, "oci-layout", canonical({"imageLayoutVersion": LAYOUT_VERSION}), image.epoch)
    os.replace(tmp, path)
    return Written(
        path=path,
        name=image.name,
        manifest_digest=sha256(manifest),
        config_digest=config_digest,
        size=sum(layer.blob.size for layer in image.layers),
        uncompressed_size=sum(layer.blob.uncompressed_size for layer in image.layers),
    )


# --- verification --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedLayer:
    digest: str
    diff_id: str
    size: int
    uncompressed_size: int


@dataclass(frozen=True)
class Verified:
    name: str
    manifest_digest: str
    config_digest: str
    config: dict[str, Any]
    layers: tuple[VerifiedLayer, ...]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    @property
    def uncompressed_size(self) -> int:
        return sum(layer.uncompressed_size for layer in self.layers)


def _hash_stream(stream: IO[bytes]) -> tuple[str, int]:
    h = hashlib.sha256()
    count = 0
    for chunk in iter(lambda: stream.read(1 << 20), b""):
        h.update(chunk)
        count += len(chunk)
    return "sha256:" + h.hexdigest(), count


def verify(path: Path) -> list[Verified]:
    """Check the archive at ``path`` (see the module docstring); raise :class:`ArchiveError` naming the
    first claim that does not hold."""
    where = str(path)
    with tarfile.open(path, "r") as tar:
        members = {m.name.rstrip("/"): m for m in tar.getmembers()}

        def read(name: str) -> bytes:
            member = members.get(name)
            if member is None or not member.isfile():
                raise ArchiveError(f"{where}: no {name}")
            handle = tar.extractfile(member)
            if handle is None:
                raise ArchiveError(f"{where}: {name} cannot be read")
            return handle.read()

        def blob(digest: str, size: int, what: str) -> bytes:
            algorithm, _, hex_digest = digest.partition(":")
            if algorithm != "sha256":
                raise ArchiveError(f"{where}: {what} uses {algorithm}, not sha256")
            data = read(f"blobs/sha256/{hex_digest}")
            if sha256(data) != digest:
                raise ArchiveError(f"{where}: {what} blob does not hash to {digest}")
            if len(data) != size:
                raise ArchiveError(f"{where}: {what} is {len(data)} bytes, its descriptor says {size}")
            return data

        layout = json.loads(read("oci-layout"))
        if layout.get("imageLayoutVersion") != LAYOUT_VERSION:
            raise ArchiveError(f"{where}: oci-layout {layout}")
        index = json.loads(read("index.json"))
        if index.get("schemaVersion") != 2 or not index.get("manifests"):
            raise ArchiveError(f"{where}: index.json lists no manifest")
        docker = json.loads(read("manifest.json"))
        out = []
        for number, descriptor in enumerate(index["manifests"]):
            name = descriptor.get("annotations", {}).get(NAME_ANNOTATION, "")
            manifest = json.loads(blob(descriptor["digest"], descriptor["size"], "manifest"))
            if manifest.get("mediaType") != MEDIA_MANIFEST:
                raise ArchiveError(f"{where}: manifest media type {manifest.get('mediaType')}")
            config_desc = manifest["config"]
            config = json.loads(blob(config_desc["digest"], config_desc["size"], "config"))
            platform = descriptor.get("platform", {})
            if (platform.get("os"), platform.get("architecture")) != (
                config.get("os"),
                config.get("architecture"),
            ):
                raise ArchiveError(f"{where}: index platform {platform} is not the config's")
            diff_ids = config["rootfs"]["diff_ids"]
            if len(diff_ids) != len(manifest["layers"]):
                raise ArchiveError(
                    f"{where}: {len(manifest['layers'])} layers but {len(diff_ids)} diff_ids in the config"
                )
            if len(config.get("history", [])) != len(diff_ids):
                raise ArchiveError(f"{where}: history does not have one entry per layer")
            layers = []
            for position, (layer_desc, diff_id) in enumerate(zip(manifest["layers"], diff_ids, strict=True)):
                what = f"layer {position}"
                if layer_desc["mediaType"] != MEDIA_LAYER:
                    raise ArchiveError(f"{where}: {what} media type {layer_desc['mediaType']}")
                data = blob(layer_desc["digest"], layer_desc["size"], what)
                with gzip.GzipFile(fileobj=io.BytesIO(data)) as gz:
                    uncompressed, usize = _hash_stream(cast(IO[bytes], gz))
                if uncompressed != diff_id:
                    raise ArchiveError(
                        f"{where}: {what} uncompresses to {uncompressed}, diff_id says {diff_id}"
                    )
                layers.append(VerifiedLayer(layer_desc["digest"], diff_id, layer_desc["size"], usize))
            entry = docker[number] if number < len(docker) else {}
            expected_layers = [f"blobs/sha256/{d['digest'].split(':', 1)[1]}" for d in manifest["layers"]]
            if entry.get("Layers") != expected_layers or not str(entry.get("Config", "")).endswith(
                config_desc["digest"].split(":", 1)[1]
            ):
                raise ArchiveError(f"{where}: manifest.json does not name the index's config and layers")
            out.append(Verified(name, descriptor["digest"], config_desc["digest"], config, tuple(layers)))
        return out
