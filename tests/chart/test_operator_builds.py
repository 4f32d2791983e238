"""The operators for the local real node (`make operators-build`, tools/operators/, k8s/values/local-node/):
pinned versions agree everywhere, the image specs and the values overlays name the same images, and the
overlays set only keys the pinned charts read.

Sources read at the pinned versions (the tables below hold what was read; no registry host is written):
  - strimzi-kafka-operator 1.2.0, helm-charts/helm3/strimzi-kafka-operator/values.yaml
    (defaultImageRegistry, defaultImageRepository, defaultImageTag) and templates/_helpers.tpl
    "strimzi.image" (registry/repository/name:tag; the Kafka images' tag is defaultImageTag +
    "-kafka-<version>"), templates/060-Deployment-strimzi-cluster-operator.yaml (image.imagePullPolicy: the
    operator's container and STRIMZI_IMAGE_PULL_POLICY, not in values.yaml);
  - kube-prometheus-stack 88.2.0, values.yaml (prometheusOperator.image, .prometheusConfigReloader.image,
    .admissionWebhooks.enabled, .tls.enabled; prometheus.prometheusSpec.image; grafana.enabled,
    kubeStateMetrics.enabled, nodeExporter.enabled, alertmanager.enabled) and templates/prometheus/
    prometheus.yaml (the Prometheus resource's version = prometheusSpec.image.tag);
  - keda 2.20.2 (kedacore/charts), keda/values.yaml (image.keda, image.metricsApiServer, image.webhooks,
    image.pullPolicy);
  - prometheus-operator v0.93.0 go.mod (its replace block: ./pkg/apis/monitoring, ./pkg/client) and
    pkg/operator/defaults.go (PrometheusCompatibilityMatrix ends at v3.13.1);
  - Strimzi 1.2.0 kafka-versions.yaml (4.3.1 is the default Kafka) and docker-images/.
Where the charts lie beside the checkout (../shared/upstream, the fallback for machines that reach no chart
repository), the tables are checked against their values.yaml and the overlays are rendered with helm.
"""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import tomllib
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chart.kube_schemas import load_all

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "tools" / "operators"
LOCAL = ROOT / "k8s" / "values" / "local-node"
UPSTREAM = ROOT.parent / "shared" / "upstream"

REGISTRY = object()  # an upstream default that is a registry host: present and non-empty, not written here

# chart archive -> {dotted key: upstream default (None: read by a template, absent from values.yaml)}
CHART_KEYS: dict[str, dict[str, Any]] = {
    "strimzi-kafka-operator-1.2.0.tgz": {
        "defaultImageRegistry": REGISTRY,
        "defaultImageRepository": "strimzi",
        "defaultImageTag": "1.2.0",
        "image.imagePullPolicy": None,
    },
    "kube-prometheus-stack-88.2.0.tgz": {
        "prometheusOperator.image.registry": REGISTRY,
        "prometheusOperator.image.repository": "prometheus-operator/prometheus-operator",
        "prometheusOperator.image.tag": "",
        "prometheusOperator.image.pullPolicy": "IfNotPresent",
        "prometheusOperator.prometheusConfigReloader.image.registry": REGISTRY,
        "prometheusOperator.prometheusConfigReloader.image.repository": (
            "prometheus-operator/prometheus-config-reloader"
        ),
        "prometheusOperator.prometheusConfigReloader.image.tag": "",
        "prometheusOperator.admissionWebhooks.enabled": True,
        "prometheusOperator.tls.enabled": True,
        "prometheus.prometheusSpec.image.registry": REGISTRY,
        "prometheus.prometheusSpec.image.repository": "prometheus/prometheus",
        "prometheus.prometheusSpec.image.tag": "v3.13.2-distroless",
        "prometheus.prometheusSpec.image.pullPolicy": "IfNotPresent",
        "grafana.enabled": True,
        "kubeStateMetrics.enabled": True,
        "nodeExporter.enabled": True,
        "alertmanager.enabled": True,
    },
    "keda-2.20.2.tgz": {
        "image.keda.registry": REGISTRY,
        "image.keda.repository": "kedacore/keda",
        "image.keda.tag": "",
        "image.metricsApiServer.registry": REGISTRY,
        "image.metricsApiServer.repository": "kedacore/keda-metrics-apiserver",
        "image.metricsApiServer.tag": "",
        "image.webhooks.registry": REGISTRY,
        "image.webhooks.repository": "kedacore/keda-admission-webhooks",
        "image.webhooks.tag": "",
        "image.pullPolicy": "Always",
    },
}
OVERLAYS = {
    "strimzi-kafka-operator-1.2.0.tgz": "strimzi-operator.yaml",
    "kube-prometheus-stack-88.2.0.tgz": "kube-prometheus-stack.yaml",
    "keda-2.20.2.tgz": "keda.yaml",
}


def versions() -> dict[str, str]:
    pairs = (ln.split("=", 1) for ln in (OPS / "versions").read_text().splitlines() if "=" in ln)
    return {k: v for k, v in pairs if not k.startswith("#")}


def operator_images() -> dict[str, tuple[str, str]]:
    """mk/operators.mk's OPERATOR_IMAGES: spec -> (part, image)."""
    text = (ROOT / "mk" / "operators.mk").read_text()
    block = re.search(r"^OPERATOR_IMAGES := \\\n((?:  .*\n)+)", text, re.MULTILINE)
    assert block, "OPERATOR_IMAGES not found in mk/operators.mk"
    out = {}
    for entry in block[1].replace("\\", " ").split():
        spec, part, image = entry.split("@")
        out[spec] = (part, image)
    return out


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, f"{path}."))
        else:
            out[path] = value
    return out


def overlay(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((LOCAL / name).read_text())
    return loaded


# --- versions ----------------------------------------------------------------------------------------


def test_one_version_of_each_operator_everywhere() -> None:
    pinned = versions()
    k8s_mk = (ROOT / "mk" / "k8s.mk").read_text()
    assert re.search(rf"^STRIMZI_VERSION \?= {re.escape(pinned['STRIMZI_VERSION'])}$", k8s_mk, re.MULTILINE)
    assert re.search(rf"^KEDA_VERSION +\?= {re.escape(pinned['KEDA_VERSION'][1:])}$", k8s_mk, re.MULTILINE)
    kafka_pom = (ROOT / "tools" / "kafka" / "pom.xml").read_text()
    assert f"<kafka.version>{pinned['KAFKA_VERSION']}</kafka.version>" in kafka_pom
    crd_pom = (ROOT / "tools" / "crds" / "strimzi" / "pom.xml").read_text()
    assert f"<strimzi.version>{pinned['STRIMZI_VERSION']}</strimzi.version>" in crd_pom
    kafka = next(o for o in load_all((ROOT / "k8s/kafka/kafka.yaml").read_text()) if o["kind"] == "Kafka")
    assert kafka["spec"]["kafka"]["version"] == pinned["KAFKA_VERSION"]


def test_the_prometheus_operator_wrapper_module_pins_the_release_without_local_replaces() -> None:
    gomod = (OPS / "prometheus-operator" / "go.mod").read_text()
    version = versions()["PROMETHEUS_OPERATOR_VERSION"]
    for module in ("", "/pkg/apis/monitoring", "/pkg/client"):
        assert re.search(
            rf"^\tgithub\.com/prometheus-operator/prometheus-operator{re.escape(module)} {version}"
            r"( // indirect)?$",
            gomod,
            re.MULTILINE,
        ), module
    assert "=> ./" not in gomod
    assert "\nreplace" not in gomod
    tools = re.search(r"^tool \(\n((?:\t.*\n)+)\)", gomod, re.MULTILINE)
    assert tools
    assert set(tools[1].split()) == {
        "github.com/prometheus-operator/prometheus-operator/cmd/operator",
        "github.com/prometheus-operator/prometheus-operator/cmd/prometheus-config-reloader",
    }
    assert (OPS / "prometheus-operator" / "go.sum").is_file()


def test_prometheus_is_the_charts_version_within_the_operators_support() -> None:
    go_sh = (OPS / "go.sh").read_text()
    match = re.search(r'^PROMETHEUS_VERSION="\$\{PROMETHEUS_VERSION:-(v[\d.]+)\}"', go_sh, re.MULTILINE)
    assert match
    chart_tag = CHART_KEYS["kube-prometheus-stack-88.2.0.tgz"]["prometheus.prometheusSpec.image.tag"]
    assert chart_tag.startswith(f"{match[1]}-")  # v3.13.2-distroless
    assert match[1].startswith("v3.13.")  # the operator's PrometheusCompatibilityMatrix ends at v3.13.1
    out = subprocess.run(
        ["bash", "-c", f'source "{OPS}/go.sh"; PROMETHEUS_VERSION={match[1]} prometheus_module_version'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == "v0.313.2"


# --- image specs and overlays ------------------------------------------------------------------------


def test_every_image_has_a_spec_and_a_built_part() -> None:
    images = operator_images()
    specs = {p.stem for p in (OPS / "images").glob("*.toml")}
    assert specs == set(images)
    dirs = subprocess.run(
        ["bash", str(OPS / "build.sh"), "--print-dirs"], capture_output=True, text=True, check=True
    ).stdout
    parts = dict(line.split("=", 1) for line in dirs.splitlines())
    for spec, (part, image) in images.items():
        assert part in parts, spec
        document = tomllib.loads((OPS / "images" / f"{spec}.toml").read_text())
        assert set(document) <= {"base", "layers", "config"}, spec
        assert document["config"]["user"] not in ("", "0", "root"), f"{spec}: runs as root"
        assert image.startswith("localhost/"), spec
        assert image in (OPS / "images" / f"{spec}.toml").read_text(), spec
        assert document["config"]["labels"]["org.opencontainers.image.version"] == image.rsplit(":", 1)[1]


def test_the_overlays_name_the_images_that_are_built() -> None:
    images = {image for _, image in operator_images().values()}
    strimzi = overlay("strimzi-operator.yaml")
    named = {
        f"{strimzi['defaultImageRegistry']}/{strimzi['defaultImageRepository']}/operator:{strimzi['defaultImageTag']}",
        f"{strimzi['defaultImageRegistry']}/{strimzi['defaultImageRepository']}/kafka:"
        f"{strimzi['defaultImageTag']}-kafka-{versions()['KAFKA_VERSION']}",
    }
    kps = overlay("kube-prometheus-stack.yaml")
    for image in (
        kps["prometheusOperator"]["image"],
        kps["prometheusOperator"]["prometheusConfigReloader"]["image"],
        kps["prometheus"]["prometheusSpec"]["image"],
    ):
        named.add(f"{image['registry']}/{image['repository']}:{image['tag']}")
    keda = overlay("keda.yaml")
    for key in ("keda", "metricsApiServer", "webhooks"):
        image = keda["image"][key]
        named.add(f"{image['registry']}/{image['repository']}:{image['tag']}")
    assert named == images


def test_nothing_is_pulled() -> None:
    assert overlay("strimzi-operator.yaml")["image"]["imagePullPolicy"] == "Never"
    kps = overlay("kube-prometheus-stack.yaml")
    assert kps["prometheusOperator"]["image"]["pullPolicy"] == "Never"
    assert kps["prometheus"]["prometheusSpec"]["image"]["pullPolicy"] == "Never"
    assert overlay("keda.yaml")["image"]["pullPolicy"] == "Never"
    # the components nothing here builds are off (docs/kubernetes.md says why)
    for key in ("grafana", "kubeStateMetrics", "nodeExporter", "alertmanager"):
        assert kps[key] == {"enabled": False}, key
    assert kps["prometheusOperator"]["admissionWebhooks"] == {"enabled": False}
    assert kps["prometheusOperator"]["tls"] == {"enabled": False}


@pytest.mark.parametrize("chart", sorted(OVERLAYS))
def test_the_overlays_set_only_keys_the_pinned_charts_read(chart: str) -> None:
    assert set(flatten(overlay(OVERLAYS[chart]))) == set(CHART_KEYS[chart])


def chart_values(archive: Path) -> dict[str, Any]:
    with tarfile.open(archive) as tar:
        member = next(
            m for m in tar.getmembers() if m.name.count("/") == 1 and m.name.endswith("/values.yaml")
        )
        handle = tar.extractfile(member)
        assert handle is not None
        values: dict[str, Any] = yaml.safe_load(io.TextIOWrapper(handle, encoding="utf-8"))
    return values


@pytest.mark.parametrize("chart", sorted(CHART_KEYS))
def test_the_key_table_is_what_the_chart_says(chart: str) -> None:
    archive = UPSTREAM / chart
    if not archive.is_file():
        pytest.skip(f"no {archive} beside this checkout: the table above stands as read")
    flat = flatten(chart_values(archive))
    for key, default in CHART_KEYS[chart].items():
        if default is None:
            assert key not in flat, f"{chart}: {key} is in values.yaml now"
        elif default is REGISTRY:
            assert isinstance(flat.get(key), str), f"{chart}: {key}"
            assert flat[key], f"{chart}: {key}"
        else:
            assert flat.get(key, "<absent>") == default, f"{chart}: {key} = {flat.get(key, '<absent>')!r}"


def helm_template(helm: str, chart: str, *values: Path) -> list[dict[str, Any]]:
    cmd = [helm, "template", "r", str(UPSTREAM / chart), "--namespace", "ns", "--kube-version", "1.37.0"]
    for path in values:
        cmd += ["--values", str(path)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    return [o for o in load_all(out.stdout) if isinstance(o, dict)]


def containers(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = []
    for obj in objs:
        if obj.get("kind") == "Deployment":
            found += obj["spec"]["template"]["spec"]["containers"]
    return found


@pytest.fixture(scope="module")
def rendered(helm: str) -> dict[str, list[dict[str, Any]]]:
    missing = [c for c in CHART_KEYS if not (UPSTREAM / c).is_file()]
    if missing:
        pytest.skip(f"no {', '.join(missing)} in {UPSTREAM}: the charts are not rendered here")
    values = ROOT / "k8s" / "values"
    return {
        chart: helm_template(helm, chart, values / OVERLAYS[chart], LOCAL / OVERLAYS[chart])
        for chart in CHART_KEYS
    }


def test_strimzi_renders_with_the_local_images(rendered: dict[str, list[dict[str, Any]]]) -> None:
    (operator,) = containers(rendered["strimzi-kafka-operator-1.2.0.tgz"])
    env = {e["name"]: e.get("value") for e in operator["env"]}
    assert operator["image"] == "localhost/strimzi/operator:1.2.0"
    assert operator["imagePullPolicy"] == "Never"
    assert env["STRIMZI_IMAGE_PULL_POLICY"] == "Never"
    kafka_images = dict(line.split("=", 1) for line in env["STRIMZI_KAFKA_IMAGES"].split())
    assert kafka_images[versions()["KAFKA_VERSION"]] == "localhost/strimzi/kafka:1.2.0-kafka-4.3.1"
    for name in ("STRIMZI_DEFAULT_TOPIC_OPERATOR_IMAGE", "STRIMZI_DEFAULT_USER_OPERATOR_IMAGE"):
        assert env[name] == "localhost/strimzi/operator:1.2.0", name
    assert env["STRIMZI_DEFAULT_KAFKA_INIT_IMAGE"] == "localhost/strimzi/operator:1.2.0"


def test_kube_prometheus_stack_renders_with_the_local_images(
    rendered: dict[str, list[dict[str, Any]]],
) -> None:
    objs = rendered["kube-prometheus-stack-88.2.0.tgz"]
    (operator,) = containers(objs)
    assert operator["image"] == "localhost/prometheus-operator/prometheus-operator:v0.93.0"
    assert operator["imagePullPolicy"] == "Never"
    reloader = "--prometheus-config-reloader=localhost/prometheus-operator/prometheus-config-reloader:v0.93.0"
    assert reloader in operator["args"]
    (prometheus,) = [o for o in objs if o["kind"] == "Prometheus"]
    assert prometheus["spec"]["image"] == "localhost/prometheus/prometheus:v3.13.2"
    assert prometheus["spec"]["version"] == "v3.13.2"
    assert prometheus["spec"]["imagePullPolicy"] == "Never"
    kinds = {o["kind"] for o in objs}
    assert "Alertmanager" not in kinds
    assert "DaemonSet" not in kinds
    assert "Job" not in kinds
    assert {o["metadata"]["name"] for o in objs if o["kind"] == "Deployment"} == {
        "r-kube-prometheus-stack-operator"
    }


def test_keda_renders_with_the_local_images(rendered: dict[str, list[dict[str, Any]]]) -> None:
    images = {c["image"]: c["imagePullPolicy"] for c in containers(rendered["keda-2.20.2.tgz"])}
    assert images == {
        "localhost/kedacore/keda:2.20.2": "Never",
        "localhost/kedacore/keda-metrics-apiserver:2.20.2": "Never",
        "localhost/kedacore/keda-admission-webhooks:2.20.2": "Never",
    }


# --- what `make operators-build` made (skipped, naming the command, until it has run) ----------------


def built(part: str, probe: str) -> Path:
    dirs = subprocess.run(
        ["bash", str(OPS / "build.sh"), "--print-dirs"], capture_output=True, text=True, check=True
    ).stdout
    path = Path(dict(line.split("=", 1) for line in dirs.splitlines())[part])
    if not (path / probe).exists():
        pytest.skip(f"{part} not built yet ({path / probe}): `make operators-build`")
    return path


def test_the_operator_image_root_is_laid_out_as_strimzis_dockerfile_says() -> None:
    home = built("strimzi-operator", "opt/strimzi/lib") / "opt" / "strimzi"
    bins = {p.name for p in (home / "bin").iterdir()}
    # docker-images/operator/scripts/ + the bin/ of the four -dist.zip files
    assert {
        "launch_java.sh",
        "cluster_operator_run.sh",
        "topic_operator_run.sh",
        "user_operator_run.sh",
    } <= bins
    assert all(os_access_x(home / "bin" / b) for b in bins if b.endswith(".sh"))
    jars = {p.name for p in (home / "lib").glob("*.jar")}
    for module in (
        "cluster-operator",
        "topic-operator",
        "user-operator",
        "kafka-init",
        "api",
        "operator-common",
    ):
        assert f"io.strimzi.{module}-{versions()['STRIMZI_VERSION']}.jar" in jars, module


def os_access_x(path: Path) -> bool:
    return path.stat().st_mode & 0o111 == 0o111


def test_the_kafka_image_root_carries_kafka_strimzis_scripts_and_what_its_brokers_load() -> None:
    home = built("strimzi-kafka", "opt/kafka/libs") / "opt" / "kafka"
    pinned = versions()
    for script in ("kafka_run.sh", "kafka_liveness.sh", "kafka_readiness.sh", "dynamic_resources.sh"):
        assert os_access_x(home / script), script
    for script in ("kafka-run-class.sh", "kafka-server-start.sh", "kafka-storage.sh"):
        assert os_access_x(home / "bin" / script), script
    jars = {p.name for p in (home / "libs").glob("*.jar")}
    assert f"kafka_2.13-{pinned['KAFKA_VERSION']}.jar" in jars
    assert {
        f"kafka-agent-{pinned['STRIMZI_VERSION']}.jar",
        f"tracing-agent-{pinned['STRIMZI_VERSION']}.jar",
    } <= jars
    assert "kafka-kubernetes-config-provider-1.2.2.jar" in jars
    assert "metrics-reporter-0.2.0.jar" in jars
    # one version of each artifact: two on one class path is a collision (Strimzi checks the same)
    names: dict[str, list[str]] = {}
    for jar in jars:
        match = re.match(r"(.+?)-\d[\w.]*(-[a-z]+)?\.jar$", jar)
        names.setdefault(match[1] if match else jar, []).append(jar)
    assert not {k: v for k, v in names.items() if len(v) > 1}
    with zipfile.ZipFile(home / "libs" / "login-stream-reporter-names.jar") as jar:
        classes = set(jar.namelist())
    assert {
        "io/strimzi/kafka/metrics/prometheus/ServerKafkaMetricsReporter.class",
        "io/strimzi/kafka/metrics/prometheus/ServerYammerMetricsReporter.class",
    } <= classes


def test_the_kafka_image_roots_own_scripts_run_kafkas_storage_tool(tmp_path: Path) -> None:
    """bin/kafka-storage.sh (ours) on the image root's libs: a KRaft cluster ID, as kafka_run.sh uses it."""
    home = built("strimzi-kafka", "opt/kafka/libs") / "opt" / "kafka"
    out = subprocess.run(
        [str(home / "bin" / "kafka-storage.sh"), "random-uuid"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "KAFKA_HOME": str(home), "HOME": str(tmp_path)},
        check=False,
        timeout=180,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("name", ["prometheus-operator", "prometheus", "keda"])
def test_the_go_parts_are_static_binaries_of_the_pinned_versions(name: str) -> None:
    files = {
        "prometheus-operator": ("operator", "prometheus-config-reloader"),
        "prometheus": ("prometheus", "promtool"),
        "keda": ("keda", "keda-adapter", "keda-admission-webhooks"),
    }[name]
    path = built(name, files[-1])
    for binary in files:
        head = (path / binary).read_bytes()[:4096]
        assert head.startswith(b"\x7fELF"), binary
        assert b"/lib64/ld-linux" not in head, f"{binary} is dynamically linked (scratch images need static)"
    if name == "prometheus":
        out = subprocess.run(
            [str(path / "prometheus"), "--version"], capture_output=True, text=True, check=True
        )
        assert "version 3.13.2" in out.stdout + out.stderr
