"""The TOML spec front end, worked example: a static binary on an empty base (the shape of the Prometheus,
prometheus-operator and KEDA images), built from tools/images/examples/static-binary.toml, checked as an
OCI archive, imported into the private containerd and run there as its non-root user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from login_images import oci, tomlspec
from tests.images.conftest import ROOT, Containerd, require_builder

EXAMPLES = ROOT / "tools" / "images" / "examples"


def builder(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tools" / "images" / "src")}
    return subprocess.run(
        [sys.executable, "-m", "login_images", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def hello(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example's context: hello.c compiled statically."""
    require_builder()
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("gcc not found: apt-get install gcc libc6-dev (the example's binary is compiled)")
    folder = tmp_path_factory.mktemp("hello")
    subprocess.run(
        [gcc, "-static", "-Os", "-o", str(folder / "hello"), str(EXAMPLES / "hello.c")],
        check=True,
        timeout=120,
    )
    return folder


@pytest.fixture(scope="module")
def archive(hello: Path) -> Path:
    output = hello / "hello.tar"
    spec = str(EXAMPLES / "static-binary.toml")
    out = builder(
        "build",
        "--spec",
        spec,
        "--context",
        str(hello),
        "--name",
        "localhost/hello:test",
        "--output",
        str(output),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    print(f"\n{out.stdout}")
    return output


def test_the_example_builds_a_two_layer_image_with_its_config(archive: Path, hello: Path) -> None:
    (image,) = oci.verify(archive)
    assert image.name == "localhost/hello:test"
    config = image.config["config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/local/bin/hello"]
    assert config["WorkingDir"] == "/data"
    assert config["ExposedPorts"] == {"8080/tcp": {}}
    assert config["Labels"] == {"org.opencontainers.image.title": "hello"}
    assert len(image.layers) == 2  # the scratch base (/etc/passwd, /etc/group, /tmp) and the binary
    binary_size = (hello / "hello").stat().st_size
    assert binary_size < image.uncompressed_size < binary_size + 64 * 1024


def test_the_same_spec_and_binary_give_the_same_digest(archive: Path, hello: Path) -> None:
    again = hello / "again.tar"
    spec = str(EXAMPLES / "static-binary.toml")
    out = builder(
        "build",
        "--spec",
        spec,
        "--context",
        str(hello),
        "--name",
        "localhost/hello:test",
        "--output",
        str(again),
    )
    assert out.returncode == 0, out.stderr
    assert again.read_bytes() == archive.read_bytes()


def test_it_runs_in_containerd_as_its_user_and_honours_a_read_only_root(
    archive: Path, containerd: Containerd
) -> None:
    imported = containerd.ctr("images", "import", str(archive))
    assert imported.returncode == 0, imported.stderr
    out = containerd.run("localhost/hello:test")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello uid=65532 gid=65532 args=0 workdir=writable"
    out = containerd.run("localhost/hello:test", "/usr/local/bin/hello", "x", read_only=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello uid=65532 gid=65532 args=1 workdir=read-only"


def test_the_jre_example_is_a_valid_spec() -> None:
    """Strimzi-shaped: a Debian base with a JRE and tini, jars and scripts as layers (not built here)."""
    spec = tomlspec.load(EXAMPLES / "strimzi-kafka.toml", EXAMPLES)
    assert spec.base.kind == "debian"
    assert "openjdk-17-jre-headless" in spec.base.packages
    assert [layer.name for layer in spec.layers] == ["jars", "scripts"]
    assert spec.config.entrypoint is not None
    assert spec.config.entrypoint[0] == "/usr/bin/tini"
