"""`make crds` (tools/crds/build.sh): the CRDs the manifest checks validate against come from package
registries only, and are the CRDs the pinned upstream releases ship.

Pinned here by content (SHA-256 of each file as generated), for the versions of tools/operators/versions:
  - Strimzi 1.2.0: packaging/install/cluster-operator/04x-Crd-*.yaml of the 1.2.0 source tree (commit
    6c7b43c4af0db547c10463ba09d1dfa6f5e156a0), which io.strimzi:crd-generator 1.2.0 regenerates byte for byte
    from io.strimzi:api 1.2.0 with the arguments of api/pom.xml (execution generate-crds);
  - prometheus-operator v0.93.0: example/prometheus-operator-crd/ of its Go module (commit f8fafd475f3d);
  - KEDA v2.20.2: config/crd/bases/ of github.com/kedacore/keda/v2 (commit 68a5b5028f35).
Where ../shared/crds lies beside the checkout (this project's CI machines), the generated files must also
equal those copies of the same upstream files, file for file.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from tests.chart.kube_schemas import Obj, load_all

ROOT = Path(__file__).resolve().parents[2]
GENERATED = ROOT / ".cache" / "crds"
SHARED = ROOT.parent / "shared" / "crds"
VERSIONS = ROOT / "tools" / "operators" / "versions"

# file in .cache/crds -> (kind, sha256 of the upstream file at the pinned version)
PINNED: dict[str, tuple[str, str]] = {
    "strimzi-kafka.yaml": ("Kafka", "b5b27fc8d52068a77cde7c40d47c068023c7b4e92fc266c45200db2d2506392a"),
    "strimzi-kafkanodepool.yaml": (
        "KafkaNodePool",
        "411c1b32ef8c1a6408ac9d4fe791115a6ce2b41107204588f976a3ed19be2430",
    ),
    "strimzi-kafkatopic.yaml": (
        "KafkaTopic",
        "36390f0731c699448076d4ee739e8b7f331d083e91a7fb71500aaa830ab1127e",
    ),
    "strimzi-kafkauser.yaml": (
        "KafkaUser",
        "c7e91b9b027a516b43dc7d369e781ee23a6ea177ae15fe0c33af6f722e26e05f",
    ),
    "monitoring.coreos.com_servicemonitors.yaml": (
        "ServiceMonitor",
        "a99047972c9dd7679ce2050b9968e8a08773492e671b3e17abd476d42aa78a32",
    ),
    "monitoring.coreos.com_podmonitors.yaml": (
        "PodMonitor",
        "45a93443daa687d3654f7e9631909ff7edcdf3ec09c5e60251b74aa2722aee5d",
    ),
    "monitoring.coreos.com_prometheusrules.yaml": (
        "PrometheusRule",
        "78be98554b9c8506ab2b4f4feb91c5f3a56e536a0a510f3a8e876a459970d56d",
    ),
    "monitoring.coreos.com_alertmanagerconfigs.yaml": (
        "AlertmanagerConfig",
        "fed47c462483a47a4d1912bf8a7a3767618644cfdee86dc73d7624c55d6a8b9d",
    ),
    "keda.sh_scaledobjects.yaml": (
        "ScaledObject",
        "af35555862a83933b074af14ad439c4b4ceabaf4daa3e9338e9b23e36d308d80",
    ),
    "keda.sh_triggerauthentications.yaml": (
        "TriggerAuthentication",
        "275307b4cb19ca8f0f506a879282aa4c67587ac16ec757f494d6585c5c185d65",
    ),
}


def load(path: Path) -> Obj:
    """One CRD, read as the manifest checks read it (their loader takes AlertmanagerConfig's `- =`)."""
    (crd,) = load_all(path.read_text())
    return crd


def versions() -> dict[str, str]:
    pairs = (line.split("=", 1) for line in VERSIONS.read_text().splitlines() if "=" in line)
    return {k.strip(): v.strip() for k, v in pairs if not k.lstrip().startswith("#")}


@pytest.fixture(scope="module")
def generated() -> Path:
    """`make crds`' output (make setup runs it before every `make test`): missing = a broken set-up."""
    missing = [name for name in PINNED if not (GENERATED / name).is_file()]
    if missing:
        pytest.fail(f"{GENERATED} lacks {', '.join(missing)}: run `make crds` (make setup runs it)")
    return GENERATED


def test_the_generated_crds_are_the_pinned_upstream_files(generated: Path) -> None:
    wrong = []
    for name, (kind, digest) in PINNED.items():
        data = (generated / name).read_bytes()
        crd = load(generated / name)
        assert crd["kind"] == "CustomResourceDefinition", name
        assert crd["spec"]["names"]["kind"] == kind, name
        if hashlib.sha256(data).hexdigest() != digest:
            wrong.append(name)
    assert not wrong, f"differ from the pinned upstream CRDs: {wrong} (versions changed? re-pin them here)"


def test_they_carry_the_pinned_versions(generated: Path) -> None:
    pinned = versions()
    for name in PINNED:
        crd = load(generated / name)
        annotations = crd["metadata"].get("annotations") or {}
        labels = crd["metadata"].get("labels") or {}
        if crd["spec"]["group"] == "monitoring.coreos.com":
            assert annotations["operator.prometheus.io/version"] == pinned["PROMETHEUS_OPERATOR_VERSION"][1:]
        elif crd["spec"]["group"] == "kafka.strimzi.io":
            # Strimzi 1.2 serves kafka.strimzi.io/v1 only; its generator labels what it writes
            assert [v["name"] for v in crd["spec"]["versions"]] == ["v1"], name
            assert labels == {"app": "strimzi", "strimzi.io/crd-install": "true"}, name
    # each links into the per-user cache directory named by the versions: a version bump regenerates
    target = (generated / "strimzi-kafka.yaml").resolve()
    assert target.parent.parent.name == (
        f"crds-strimzi-{pinned['STRIMZI_VERSION']}-prometheus-operator-{pinned['PROMETHEUS_OPERATOR_VERSION']}"
        f"-keda-{pinned['KEDA_VERSION']}"
    )


@pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"no {SHARED} beside this checkout (the pins above still hold)"
)
def test_they_equal_the_copies_beside_the_checkout(generated: Path) -> None:
    shared = sorted(p.name for p in SHARED.glob("*.yaml"))
    assert shared, SHARED
    for name in shared:
        assert name in PINNED, f"{SHARED / name} has no generated counterpart"
        assert load(generated / name) == load(SHARED / name), name


def test_a_second_run_only_links(tmp_path: Path, generated: Path) -> None:
    """Cached per user: a fresh OUT_DIR is filled from the cache without Maven, Java or Go."""
    env = {**os.environ, "PATH": "/usr/bin:/bin"}  # no go, and no JDK 21 looked for
    for var in ("JAVA_HOME",):
        env.pop(var, None)
    out = subprocess.run(
        ["bash", str(ROOT / "tools" / "crds" / "build.sh"), str(tmp_path / "crds")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "crds: cached" in out.stdout
    assert sorted(p.name for p in (tmp_path / "crds").iterdir()) == sorted(PINNED)
