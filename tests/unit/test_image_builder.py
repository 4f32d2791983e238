"""The daemon-free image builder's parts that need no root: the Dockerfile translation, the build
context's digests, deterministic layer packing (pyc rewriting, overlay whiteouts), the OCI archive and
its verification, the TOML spec. The image tier (tests/images) builds and runs the real images."""

from __future__ import annotations

import gzip
import io
import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from login_images import dockerfile, oci, tomlspec
from login_images.context import Ignore, digest
from login_images.errors import ArchiveError, SpecError
from login_images.spec import Config, Copy, ImageSpec, MakeDir, Run
from login_images.tarball import LayerBlob, Select, entries, hash_pyc, pack

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "services" / "Dockerfile"
EPOCH = 1704067200


def translate(service: str = "producer", target: str | None = None) -> ImageSpec:
    return dockerfile.translate(DOCKERFILE, target or service, {"SERVICE": service}, ROOT)


# --- the Dockerfile front end ----------------------------------------------------------------------------


def test_the_services_dockerfile_becomes_user_dependency_and_code_layers() -> None:
    spec = translate("consumer")
    assert spec.base.kind == "debian"
    assert (spec.base.suite, spec.base.python) == ("bookworm", "3.11")
    assert "python3" in spec.base.packages
    assert spec.base.build_packages == ("python3-pip",)
    user, deps, code = spec.layers
    assert (user.root, deps.root, code.root) == ("image", "build", "build")
    assert deps.capture == code.capture == ("/opt/venv",)
    assert isinstance(user.steps[0], Run)
    assert "useradd --uid 10001" in user.steps[0].command
    assert MakeDir("/app") in user.steps
    deps_copies = [s for s in deps.steps if isinstance(s, Copy)]
    assert [c.sources for c in deps_copies] == [
        ("requirements/constraints.txt",),
        ("services/consumer/requirements.txt",),
    ]
    runs = [s for s in deps.steps if isinstance(s, Run)]
    assert runs[0].command.startswith("python -m venv --without-pip /opt/venv")
    assert "-r services/${SERVICE}/requirements.txt" in runs[-1].command
    assert ("SERVICE", "consumer") in runs[-1].env, "build arguments reach RUN as environment"
    assert runs[-1].workdir == "/src"
    code_copies = [s for s in code.steps if isinstance(s, Copy)]
    assert [c.sources for c in code_copies] == [("libs/common",), ("services/consumer",)]
    assert "--no-deps" in next(s for s in code.steps if isinstance(s, Run)).command


def test_the_config_is_what_the_runtime_stages_say() -> None:
    config = translate("producer").config
    assert config.user == "10001"
    assert config.workdir == "/app"
    assert config.entrypoint == ("login-producer",)
    assert config.cmd is None
    assert config.exposed_ports == ("8001/tcp",)
    env = dict(config.env)
    assert env["PATH"].startswith("/opt/venv/bin:/usr/local/sbin:")
    assert env["METRICS_PORT"] == "8001"
    assert env["LOG_FORMAT"] == "json"
    assert "PIP_NO_CACHE_DIR" not in env, "the build stage's ENV stays in the build stage"


def test_the_dev_target_adds_sources_owned_by_the_app_user() -> None:
    spec = translate("producer", target="dev")
    dev = spec.layers[-1]
    copies = [s for s in dev.steps if isinstance(s, Copy)]
    assert {c.dest for c in copies} == {"/app/libs/common/src", "/app/services/producer/src"}
    assert {c.owner for c in copies} == {(10001, 10001)}
    assert dict(spec.config.env)["PYTHONPATH"] == "/app/libs/common/src:/app/services/producer/src"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM python:3.11-slim-bookworm\nADD x /x\n", "ADD is not supported"),
        ("FROM node:20-slim\n", "no daemon-free counterpart"),
        ("FROM debian:bookworm\nCOPY *.txt /x/\n", "wildcards"),
        ("FROM debian:bookworm AS a\nFROM debian:bookworm\nCOPY --from=a /x /y\n", "same path"),
        ("FROM debian:bookworm\nRUN cat <<EOF\n", "heredocs"),
    ],
)
def test_what_the_builder_cannot_build_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "Dockerfile"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        dockerfile.translate(path, "0" if " AS " not in text else "1", {}, tmp_path)


def test_an_unknown_build_argument_is_an_error() -> None:
    with pytest.raises(SpecError, match=r"SERVCE"):
        dockerfile.translate(DOCKERFILE, "producer", {"SERVCE": "producer"}, ROOT)


def test_variables_expand_as_docker_expands_them() -> None:
    variables = {"A": "1", "EMPTY": ""}
    assert (
        dockerfile.expand("$A-${A}-${B:-two}-${A:+set}-${EMPTY:-dflt}-\\$A", variables)
        == "1-1-two-set-dflt-$A"
    )


# --- the build context ---------------------------------------------------------------------------------


def test_dockerignore_rules() -> None:
    ignore = Ignore(("**/__pycache__", "*.egg-info", "docs", "!docs/keep.md", "tests"))
    assert ignore.excluded("a/b/__pycache__/x.pyc")
    assert ignore.excluded("x.egg-info/PKG-INFO")
    assert ignore.excluded("docs/other.md")
    assert not ignore.excluded("docs/keep.md")
    assert ignore.excluded("tests")
    assert not ignore.excluded("services/tests.py")


def test_only_a_content_change_changes_the_inputs_digest(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("A = 1\n")
    (tmp_path / "pkg" / "__pycache__").mkdir()
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"junk")
    ignore = Ignore(("**/__pycache__",))
    first = digest(tmp_path, ("pkg",), ignore)
    os.utime(tmp_path / "pkg" / "a.py", (1, 1))
    (tmp_path / "pkg" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"other junk")
    assert digest(tmp_path, ("pkg",), ignore) == first, "mtimes and ignored files do not count"
    (tmp_path / "pkg" / "a.py").write_text("A = 2\n")
    assert digest(tmp_path, ("pkg",), ignore) != first
    with pytest.raises(SpecError, match=r"excluded by \.dockerignore"):
        digest(tmp_path, ("pkg/__pycache__",), ignore)


# --- layers ---------------------------------------------------------------------------------------------


def tree(root: Path) -> Path:
    (root / "usr" / "lib" / "mod").mkdir(parents=True)
    (root / "usr" / "lib" / "mod" / "m.py").write_text("VALUE = 42\n")
    py_compile.compile(
        str(root / "usr/lib/mod/m.py"),
        invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
        doraise=True,
    )
    (root / "usr" / "bin").mkdir()
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(root / "usr" / "bin" / "tool", 0o755)  # noqa: S103 - an executable in an image tree
    os.link(root / "usr" / "bin" / "tool", root / "usr" / "bin" / "tool2")
    os.symlink("tool", root / "usr" / "bin" / "alias")
    (root / "usr" / "share" / "doc" / "pkg").mkdir(parents=True)
    (root / "usr" / "share" / "doc" / "pkg" / "copyright").write_text("c\n")
    (root / "usr" / "share" / "doc" / "pkg" / "changelog").write_text("long\n")
    return root


def members(blob_dir: Path, blob: LayerBlob) -> list[tarfile.TarInfo]:
    data = gzip.decompress((blob_dir / blob.digest.split(":", 1)[1]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmembers()


def test_packing_is_deterministic_and_ignores_mtimes(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    first = pack(root, tmp_path / "blobs", EPOCH)
    for path in root.rglob("*"):
        os.utime(path, (123, 123), follow_symlinks=False)
    second = pack(root, tmp_path / "blobs", EPOCH)
    assert second == first
    listed = members(tmp_path / "blobs", first)
    names = [m.name for m in listed]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {m.mtime for m in listed} == {EPOCH}
    assert not any(m.uname or m.gname for m in listed)
    links = {m.name: m for m in listed if m.islnk() or m.issym()}
    assert links["usr/bin/tool2"].islnk()
    assert links["usr/bin/tool2"].linkname == "usr/bin/tool"
    assert links["usr/bin/alias"].linkname == "tool"
    (root / "usr" / "bin" / "tool").write_text("#!/bin/sh\necho changed\n")
    assert pack(root, tmp_path / "blobs", EPOCH).diff_id != first.diff_id
    assert pack(root, tmp_path / "blobs", EPOCH + 1).diff_id != first.diff_id, "the epoch is an input"


def test_a_timestamp_pyc_becomes_a_checked_hash_pyc_python_accepts(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    blob = pack(root, tmp_path / "blobs", EPOCH)
    out = tmp_path / "out"
    data = gzip.decompress((tmp_path / "blobs" / blob.digest.split(":", 1)[1]).read_bytes())
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(out, filter="tar")
    pyc = next((out / "usr/lib/mod/__pycache__").glob("m.*.pyc")).read_bytes()
    assert int.from_bytes(pyc[4:8], "little") == 0b11, "checked-hash flags"
    assert pyc == hash_pyc(
        next((root / "usr/lib/mod/__pycache__").glob("m.*.pyc")).read_bytes(), b"VALUE = 42\n"
    )
    assert os.stat(out / "usr/lib/mod/m.py").st_mtime == EPOCH
    env = {**os.environ, "PYTHONPATH": str(out / "usr/lib/mod"), "PYTHONDONTWRITEBYTECODE": "1"}
    run = subprocess.run(
        [sys.executable, "-v", "-c", "import m; print(m.VALUE)"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert run.stdout.strip() == "42"
    assert "m.cpython-311.pyc matches" in run.stderr.replace(f"{out}/usr/lib/mod/__pycache__/", "")


def test_select_takes_captured_paths_with_their_parents_and_trims_but_keeps(tmp_path: Path) -> None:
    root = tree(tmp_path / "root")
    captured = list(entries(root, Select(include=("/usr/bin",))))
    assert captured == ["usr", "usr/bin", "usr/bin/alias", "usr/bin/tool", "usr/bin/tool2"]
    trimmed = set(entries(root, Select(exclude=("usr/share/doc/*",), keep=("usr/share/doc/*/copyright",))))
    assert "usr/share/doc/pkg/copyright" in trimmed
    assert "usr/share/doc/pkg" in trimmed
    assert "usr/share/doc/pkg/changelog" not in trimmed


@pytest.mark.skipif(os.geteuid() != 0, reason="whiteouts are character devices: mknod needs root")
def test_overlay_whiteouts_become_oci_whiteouts(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc" / "fresh").mkdir(parents=True)
    os.mknod(upper / "etc" / "gone", stat.S_IFCHR | 0o000, os.makedev(0, 0))
    os.setxattr(upper / "etc" / "fresh", "trusted.overlay.opaque", b"y")
    blob = pack(upper, tmp_path / "blobs", EPOCH)
    names = [m.name for m in members(tmp_path / "blobs", blob)]
    assert names == ["etc", "etc/fresh", "etc/fresh/.wh..wh..opq", "etc/.wh.gone"]


# --- the OCI archive -------------------------------------------------------------------------------------


def archive(tmp_path: Path, name: str = "archive.tar") -> tuple[Path, oci.Written]:
    root = tree(tmp_path / "root") if not (tmp_path / "root").exists() else tmp_path / "root"
    blob = pack(root, tmp_path / "blobs", EPOCH)
    image = oci.Image(
        name="localhost/sample:1",
        config=Config(user="10001", env=(("PATH", "/usr/bin"),), entrypoint=("/usr/bin/tool",)),
        layers=(oci.Layer(blob, "sample"),),
        epoch=EPOCH,
    )
    path = tmp_path / name
    return path, oci.write_archive(image, tmp_path / "blobs", path)


def test_an_archive_is_a_verifiable_oci_layout_and_reproducible(tmp_path: Path) -> None:
    path, written = archive(tmp_path)
    again, _ = archive(tmp_path, "again.tar")
    assert again.read_bytes() == path.read_bytes()
    (image,) = oci.verify(path)
    assert image.name == "localhost/sample:1"
    assert image.manifest_digest == written.manifest_digest
    assert image.config["config"]["User"] == "10001"
    with tarfile.open(path) as tar:
        names = tar.getnames()
        index = json.loads(tar.extractfile("index.json").read())  # type: ignore[union-attr]
    assert {"oci-layout", "index.json", "manifest.json"} <= set(names)
    annotations = index["manifests"][0]["annotations"]
    assert annotations == {
        "io.containerd.image.name": "localhost/sample:1",
        "org.opencontainers.image.ref.name": "1",
    }


def read_all(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]


def write_all(path: Path, contents: dict[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in sorted(contents.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def blob_name(digest_value: str) -> str:
    return f"blobs/sha256/{digest_value.split(':', 1)[1]}"


def test_verification_catches_a_changed_blob(tmp_path: Path) -> None:
    path, _ = archive(tmp_path)
    (image,) = oci.verify(path)
    contents = read_all(path)
    layer = blob_name(image.layers[0].digest)
    contents[layer] = contents[layer][:-1] + bytes([contents[layer][-1] ^ 1])
    write_all(tmp_path / "tampered.tar", contents)
    with pytest.raises(ArchiveError, match="does not hash to"):
        oci.verify(tmp_path / "tampered.tar")


def test_verification_catches_a_wrong_diff_id_behind_consistent_descriptors(tmp_path: Path) -> None:
    """A config naming another diff_id, with manifest, index and manifest.json updated to match it: only
    uncompressing the layer can tell, and verify does."""
    path, written = archive(tmp_path)
    contents = read_all(path)
    config = json.loads(contents.pop(blob_name(written.config_digest)))
    config["rootfs"]["diff_ids"] = ["sha256:" + "0" * 64]
    new_config = oci.canonical(config)
    contents[blob_name(oci.sha256(new_config))] = new_config
    manifest = json.loads(contents.pop(blob_name(written.manifest_digest)))
    manifest["config"].update(digest=oci.sha256(new_config), size=len(new_config))
    new_manifest = oci.canonical(manifest)
    contents[blob_name(oci.sha256(new_manifest))] = new_manifest
    index = json.loads(contents["index.json"])
    index["manifests"][0].update(digest=oci.sha256(new_manifest), size=len(new_manifest))
    contents["index.json"] = oci.canonical(index)
    docker = json.loads(contents["manifest.json"])
    docker[0]["Config"] = blob_name(oci.sha256(new_config))
    contents["manifest.json"] = oci.canonical(docker)
    write_all(tmp_path / "wrong.tar", contents)
    with pytest.raises(ArchiveError, match="diff_id says sha256:0000"):
        oci.verify(tmp_path / "wrong.tar")


# --- the TOML spec ---------------------------------------------------------------------------------------


def test_the_examples_load() -> None:
    examples = ROOT / "tools" / "images" / "examples"
    static = tomlspec.load(examples / "static-binary.toml")
    assert static.base.kind == "scratch"
    assert static.base.users[0].uid == 65532
    assert static.layers[0].steps[0] == Copy(("hello",), "/usr/local/bin/hello", None, 0o755)
    assert static.config.exposed_ports == ("8080/tcp",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[base]\nfrom = "scratch"\npackges = []\n', "unknown key"),
        ('[base]\nfrom = "alpine:3"\n', "expected"),
        ('[base]\nfrom = "scratch"\n[[layers]]\n[[layers.steps]]\nrun = "true"\n', "no shell"),
        ('[base]\nfrom = "scratch"\n[[layers]]\n[[layers.steps]]\ncopy = "x"\n', "needs `to`"),
        (
            '[base]\nfrom = "scratch"\n[[layers]]\n[[layers.steps]]\ncopy = "x"\nto = "/x"\nowner = "app"\n',
            "numeric",
        ),
    ],
)
def test_a_bad_spec_is_refused_with_the_reason(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    with pytest.raises(SpecError, match=message):
        tomlspec.load(path)


def test_the_cli_says_why_it_cannot_build_without_root(tmp_path: Path) -> None:
    """As a non-root user (``setpriv`` when the tests run as root): exit 2 and one sentence, no traceback."""
    command = [
        sys.executable,
        "-m",
        "login_images",
        "--cache",
        str(tmp_path / "cache"),
        "build",
        "--spec",
        str(ROOT / "tools/images/examples/static-binary.toml"),
        "--name",
        "x",
        "--output",
        str(tmp_path / "x.tar"),
    ]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop root")
        command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *command]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools" / "images" / "src"), "HOME": str(tmp_path)}
    out = subprocess.run(command, capture_output=True, text=True, env=env, check=False, timeout=60)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not root" in out.stderr
    assert "Traceback" not in out.stderr
