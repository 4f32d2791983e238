"""The producer and consumer images, built without a daemon from services/Dockerfile (`make images-oci`),
checked as OCI archives, imported into a private containerd (`make images-import`) and run there.

What runs is read from the running process (``/proc/self/status`` inside the container), not from the
image config: uid 10001, Python 3.11, a virtualenv its user cannot write, a read-only root filesystem
that the services start on. Sizes and build times are printed (-s) and stated in docs/images.md; the
200 MB goal is asserted on the unpacked size, which is what a node stores.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import tarfile
from pathlib import Path

import pytest
import yaml

from login_images import dockerfile, oci
from login_images.spec import ImageSpec
from tests.images.conftest import ROOT, SERVICES, Built, Containerd, build_images, make

MB = 1024 * 1024
SIZE_GOAL = 200 * MB
APP_UID = 10001


def spec(service: str) -> ImageSpec:
    return dockerfile.translate(ROOT / "services" / "Dockerfile", service, {"SERVICE": service}, ROOT)


def layer_members(archive: Path, digest: str) -> list[tarfile.TarInfo]:
    with tarfile.open(archive) as outer:
        handle = outer.extractfile(f"blobs/sha256/{digest.split(':', 1)[1]}")
        assert handle is not None
        data = gzip.decompress(handle.read())
    with tarfile.open(fileobj=io.BytesIO(data)) as inner:
        return inner.getmembers()


@pytest.mark.parametrize("service", SERVICES)
def test_the_archive_is_a_valid_oci_image_with_the_dockerfiles_config(built: Built, service: str) -> None:
    (image,) = oci.verify(built.archive(service))  # digests, sizes, diff_ids, platform, manifest.json
    assert image.name == f"localhost/login-{service}:test"
    config = image.config["config"]
    expected = spec(service).config
    port = yaml.safe_load((ROOT / "charts/login-stream/values.yaml").read_text())[service]["metricsPort"]
    assert config["User"] == str(APP_UID)
    assert config["Entrypoint"] == [f"login-{service}"]
    assert "Cmd" not in config
    assert config["WorkingDir"] == "/app"
    assert config["ExposedPorts"] == {f"{port}/tcp": {}}
    assert config["Env"] == [f"{k}={v}" for k, v in expected.env]
    assert f"METRICS_PORT={port}" in config["Env"]
    assert config["Env"][0].startswith("PATH=/opt/venv/bin:")
    # base, the app user (+ /app), dependencies, code — one history entry each
    assert len(image.layers) == 4
    assert image.config["history"][1]["created_by"].startswith("RUN groupadd")
    per_layer = ", ".join(f"{layer.uncompressed_size / MB:.1f}" for layer in image.layers)
    unpacked, compressed = image.uncompressed_size / MB, image.size / MB
    print(f"\n{image.name}: {unpacked:.1f} MB unpacked, {compressed:.1f} MB gz; layers {per_layer} MB")
    assert image.uncompressed_size < SIZE_GOAL


def test_both_images_share_the_base_and_user_layers(built: Built) -> None:
    producer, consumer = (oci.verify(built.archive(s))[0] for s in SERVICES)
    assert producer.layers[:2] == consumer.layers[:2]
    assert producer.layers[2].diff_id != consumer.layers[2].diff_id  # different requirements


@pytest.mark.parametrize("service", SERVICES)
def test_the_dependency_and_code_layers_hold_the_virtualenv_only_root_owned(
    built: Built, service: str
) -> None:
    (image,) = oci.verify(built.archive(service))
    deps, code = (layer_members(built.archive(service), layer.digest) for layer in image.layers[2:])
    for members in (deps, code):
        names = [m.name for m in members]
        assert names == sorted(names, key=lambda n: n.split("/")), "entries in path order"
        assert all(n == "opt" or n.startswith("opt/venv") for n in names), names[:5]
        assert {(m.uid, m.gid) for m in members} == {(0, 0)}
        assert {m.mtime for m in members} == {members[0].mtime}, "one fixed mtime"
        assert not any(m.uname or m.gname for m in members)
    deps_names = {m.name for m in deps}
    assert "opt/venv/pyvenv.cfg" in deps_names
    assert not any("/site-packages/pip/" in n for n in deps_names), "the runtime virtualenv has no pip"
    # The Dockerfile drops pycountry's translations (the consumer reads English names only); the tracing
    # exporters stay, both of the protocols the chart's tracing.protocol offers.
    assert not any("/site-packages/pycountry/locales" in n for n in deps_names)
    for exporter in ("grpc", "http"):
        assert any(f"/opentelemetry/exporter/otlp/proto/{exporter}/" in n for n in deps_names), exporter
    if service == "consumer":
        assert any("/site-packages/pycountry/databases/" in n for n in deps_names)
    code_names = {m.name for m in code}
    assert f"opt/venv/bin/login-{service}" in code_names
    assert any(f"site-packages/login_{service}/" in n for n in code_names)
    assert any("site-packages/login_common/" in n for n in code_names)
    assert not any("/site-packages/confluent_kafka/" in n for n in code_names), (
        "no dependency in the code layer"
    )


def test_a_second_build_reuses_every_layer_and_gives_the_same_digests(
    built: Built, tmp_path_factory: pytest.TempPathFactory
) -> None:
    again = build_images(tmp_path_factory.mktemp("again"), "test")
    for service in SERVICES:
        first, second = oci.verify(built.archive(service))[0], oci.verify(again.archive(service))[0]
        assert second.manifest_digest == first.manifest_digest
        assert second.config_digest == first.config_digest
    assert " built " not in again.output, again.output
    assert again.output.count(" cached") >= 8
    print(f"\nwarm make images-oci (both images): {again.seconds:.1f} s")


@pytest.fixture(scope="module")
def imported(built: Built, containerd: Containerd) -> dict[str, str]:
    out = make(
        "images-import",
        f"IMAGES_DIR={built.folder}",
        "IMAGE_TAG=test",
        f"CONTAINERD_ADDRESS={containerd.address}",
        "CONTAINERD_NAMESPACE=login-images-test",
    )
    assert out.returncode == 0, out.stdout + out.stderr
    listed = containerd.ctr("images", "ls", "-q").stdout.split()
    names = {s: f"localhost/login-{s}:test" for s in SERVICES}
    assert set(names.values()) <= set(listed), listed
    return names


@pytest.mark.parametrize("service", SERVICES)
def test_help_exits_0_on_a_read_only_root(
    imported: dict[str, str], containerd: Containerd, service: str
) -> None:
    out = containerd.run(imported[service], f"login-{service}", "--help", read_only=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "usage:" in out.stdout.lower()
    assert f"login-{service}" in out.stdout


PROBE = """
import json, os, sys
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
result = {"uid": status["Uid"].split(), "gid": status["Gid"].split(), "python": list(sys.version_info[:3]),
          "prefix": sys.prefix, "executable": os.path.realpath(sys.executable)}
for path in ("/opt/venv", "/opt/venv/lib/python3.11/site-packages", "/app"):
    try:
        open(os.path.join(path, "probe"), "w").close()
        result[path] = "written"
    except OSError as exc:
        result[path] = exc.strerror
print(json.dumps(result))
"""


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("read_only", [False, True], ids=["rw", "ro"])
def test_the_process_runs_as_10001_with_python_3_11_and_cannot_write_its_code(
    imported: dict[str, str], containerd: Containerd, service: str, read_only: bool
) -> None:
    out = containerd.run(imported[service], "python", "-c", PROBE, read_only=read_only)
    assert out.returncode == 0, out.stdout + out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["uid"] == [str(APP_UID)] * 4, seen
    assert seen["gid"] == [str(APP_UID)] * 4, seen
    assert seen["python"][:2] == [3, 11], seen
    assert seen["prefix"] == "/opt/venv"
    assert seen["executable"] == "/usr/bin/python3.11"
    expected = "Read-only file system" if read_only else "Permission denied"
    for path in ("/opt/venv", "/opt/venv/lib/python3.11/site-packages", "/app"):
        assert seen[path] == expected, seen


@pytest.mark.parametrize("service", SERVICES)
def test_byte_code_is_used_although_every_mtime_is_fixed(
    imported: dict[str, str], containerd: Containerd, service: str
) -> None:
    """The fixed mtime makes timestamp pycs stale; the builder stores checked-hash pycs, which Python
    accepts (`python -v` says "matches") for the stdlib, the dependencies and the code alike."""
    module = f"login_{service}.cli"
    out = containerd.run(
        imported[service], "python", "-v", "-c", f"import json, pydantic, {module}", read_only=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    matched = re.findall(r"^# (\S+\.pyc) matches ", out.stderr, re.MULTILINE)
    assert any(p.startswith("/usr/lib/python3.11/json/") for p in matched), out.stderr[-2000:]
    assert any("/site-packages/pydantic/" in p for p in matched)
    assert any(f"/site-packages/login_{service}/" in p for p in matched)
    compiled_from_source = re.findall(r"^# code object from '?(\S+\.py)'?$", out.stderr, re.MULTILINE)
    assert not compiled_from_source, compiled_from_source[:5]


def test_the_consumer_names_countries_and_states_without_pycountrys_translations(
    imported: dict[str, str], containerd: Containerd
) -> None:
    """What the trimmed pycountry still has to do in the image: every country and US state by name."""
    script = (
        "from login_consumer.enrich.loaders import countries, us_states; "
        "c, s = countries(), us_states(); "
        "print(len(c), c['DE'].name, c['DE'].continent_name, len(s), s['CA'][0])"
    )
    out = containerd.run(imported["consumer"], "python", "-c", script, read_only=True)
    assert out.returncode == 0, out.stdout + out.stderr
    count, *rest = out.stdout.split()
    assert int(count) >= 240, out.stdout
    assert " ".join(rest).startswith("Germany Europe "), out.stdout
    assert out.stdout.strip().endswith("California"), out.stdout
