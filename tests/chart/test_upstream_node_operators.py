"""What the operators tier (tests/operators), the e2e tests of operators (tests/e2e/test_operators.py) and
`make k8s-node-operators` rely on from upstream, read at the pinned versions (the table holds what was
read; re-read the files of a row when its pin moves):

  - KEDA v2.20.2 apis/keda/v1alpha1/scaledobject_types.go: PausedReplicasAnnotation
    "autoscaling.keda.sh/paused-replicas" (KEDA scales the target to that count and stops autoscaling);
  - keda chart 2.20.2 templates/_helpers.tpl (app.kubernetes.io/part-of: {{ .Values.operator.name }} on
    every KEDA pod) and values.yaml (operator.name: keda-operator);
  - strimzi-kafka-operator chart 1.2.0 templates/060-Deployment-strimzi-cluster-operator.yaml (pod label
    name: strimzi-cluster-operator);
  - Strimzi 1.2.0 operator-common/.../model/Labels.java (strimzi.io/broker-role), api/.../KafkaResources.java
    (<cluster>-entity-operator), cluster-operator/.../model/EntityTopicOperator.java and
    EntityUserOperator.java (containers topic-operator, user-operator), api/.../user/KafkaUserStatus.java
    (status.secret), api/.../nodepool/KafkaNodePoolStatus.java (status.labelSelector: the pool's pods);
  - prometheus-operator v0.93.0 pkg/operator/kubernetes.go (app.kubernetes.io/name) and
    pkg/prometheus/server/operator.go (its value "prometheus" on the Prometheus pods).

Each row is checked against its file wherever the source is at hand: Go's module cache (the operators'
builds download it), Strimzi's tree in the build cache or its archive, the charts as charts.sh caches
them or in ../shared/upstream. Where none is, the row says so and is skipped; the constants the tests use
are always compared with the table.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.e2e.test_pipeline import PAUSED_REPLICAS

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "upstream"
CACHE = Path(os.environ.get("LOGIN_STREAM_CACHE", Path.home() / ".cache" / "login-stream"))

# (where: kind:name, path inside it, what must be there)
MODEL = "cluster-operator/src/main/java/io/strimzi/operator/cluster/model/"
STRIMZI_DEPLOYMENT = "strimzi-kafka-operator/templates/060-Deployment-strimzi-cluster-operator.yaml"
KEDA_PART_OF = "app.kubernetes.io/part-of: {{ .Values.operator.name }}"
ROWS = [
    ("go:github.com/kedacore/keda/v2@v2.20.2", "apis/keda/v1alpha1/scaledobject_types.go",
     'PausedReplicasAnnotation = "autoscaling.keda.sh/paused-replicas"'),
    ("chart:keda-2.20.2", "keda/templates/_helpers.tpl", KEDA_PART_OF),
    ("chart:keda-2.20.2", "keda/values.yaml", "name: keda-operator"),
    ("chart:strimzi-kafka-operator-1.2.0", STRIMZI_DEPLOYMENT, "name: strimzi-cluster-operator"),
    ("strimzi:1.2.0", "operator-common/src/main/java/io/strimzi/operator/common/model/Labels.java",
     'STRIMZI_BROKER_ROLE_LABEL = STRIMZI_DOMAIN + "broker-role"'),
    ("strimzi:1.2.0", "api/src/main/java/io/strimzi/api/kafka/model/kafka/KafkaResources.java",
     'return clusterName + "-entity-operator";'),
    ("strimzi:1.2.0", MODEL + "EntityTopicOperator.java",
     'TOPIC_OPERATOR_CONTAINER_NAME = "topic-operator"'),
    ("strimzi:1.2.0", MODEL + "EntityUserOperator.java",
     'USER_OPERATOR_CONTAINER_NAME = "user-operator"'),
    ("strimzi:1.2.0", "api/src/main/java/io/strimzi/api/kafka/model/nodepool/KafkaNodePoolStatus.java",
     "public String getLabelSelector()"),
    ("strimzi:1.2.0", "api/src/main/java/io/strimzi/api/kafka/model/user/KafkaUserStatus.java",
     "public String getSecret()"),
    ("go:github.com/prometheus-operator/prometheus-operator@v0.93.0", "pkg/operator/kubernetes.go",
     'ApplicationNameLabelKey = "app.kubernetes.io/name"'),
    ("go:github.com/prometheus-operator/prometheus-operator@v0.93.0", "pkg/prometheus/server/operator.go",
     'applicationNameLabelValue = "prometheus"'),
]  # fmt: skip


def _gomodcache() -> Path | None:
    try:
        out = subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return Path(out.stdout.strip()) if out.returncode == 0 and out.stdout.strip() else None


def _escape_module(path: str) -> str:
    return "".join(f"!{c.lower()}" if c.isupper() else c for c in path)


def read(where: str, path: str) -> str | None:
    """The file's text at the pinned version, or None when no copy of the source is at hand."""
    kind, _, name = where.partition(":")
    if kind == "go":
        cache = _gomodcache()
        file = cache / _escape_module(name) / path if cache else None
        return file.read_text() if file and file.is_file() else None
    if kind == "strimzi":
        tree = CACHE / f"strimzi-{name}" / "src" / path
        if tree.is_file():
            return tree.read_text()
        archive = SHARED / f"strimzi-kafka-operator-{name}.tar.gz"
        return _from_archive(archive, path)
    for archive in (CACHE / "charts" / f"{name}.tgz", SHARED / f"{name}.tgz"):
        if (text := _from_archive(archive, path)) is not None:
            return text
    return None


def _from_archive(archive: Path, path: str) -> str | None:
    if not archive.is_file():
        return None
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if member.name == path or member.name.endswith("/" + path) or member.name == "./" + path:
                handle = tar.extractfile(member)
                return handle.read().decode() if handle else None
    return None


@pytest.mark.parametrize(
    ("where", "path", "needle"), ROWS, ids=[f"{w}:{p.rsplit('/', 1)[-1]}" for w, p, _ in ROWS]
)
def test_upstream_says_what_the_tests_rely_on(where: str, path: str, needle: str) -> None:
    text = read(where, path)
    if text is None:
        pytest.skip(f"no copy of {where} at hand to re-read {path} (the table stands as read)")
    assert needle in text, f"{where} {path} no longer says {needle!r}: re-read it and update the tests"


def test_the_tests_use_the_names_of_the_table() -> None:
    import tests.operators.test_operators_on_node as tier

    assert f'PausedReplicasAnnotation = "{PAUSED_REPLICAS}"' in ROWS[0][2]
    source = Path(tier.__file__).read_text()
    for name in ("name=strimzi-cluster-operator", "app.kubernetes.io/part-of=keda-operator",
                 "strimzi.io/name=login-stream-entity-operator", '"topic-operator"', '"user-operator"',
                 "app.kubernetes.io/name=prometheus", '["status"]["secret"]',
                 '["status"]["labelSelector"]'):  # fmt: skip
        assert name in source, name
    e2e = (ROOT / "tests" / "e2e" / "test_operators.py").read_text()
    assert "strimzi.io/broker-role=true" in e2e
