"""README "Kubernetes (where Docker runs)" and "Kubernetes API": each cluster command does its work where
a cluster (or, for the ones that create it, a Docker daemon) answers, and otherwise stops with the
refusal the README documents, non-zero, before any work. The expectations live in tests/readme/cluster.py
(one place to change when the tier is pointed at a cluster). `make build` is checked here too (images).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from login_devtools import k8s_api
from tests.readme import cluster
from tests.readme.conftest import ROOT, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(3600)]


@runs(*cluster.CLUSTER)
@pytest.mark.parametrize("command", list(cluster.CLUSTER))
def test_cluster_command_works_or_refuses_as_documented(command: str) -> None:
    expect = cluster.CLUSTER[command]
    if cluster.available(expect):
        ran = run(command, timeout=3600)
        assert ran.returncode == 0, ran.tail()
        for marker in expect.works:
            assert marker in ran.out, (marker, ran.tail())
        return
    ran = run(command, timeout=expect.timeout)
    assert ran.returncode != 0, ran.tail()
    for marker in expect.refusal:
        assert marker in ran.out, (marker, ran.tail())
    assert "Traceback" not in ran.out
    # refused before any work: nothing was created, applied or built
    for work in ("kind create cluster", "helm --kube-context", "docker build", "tilt up", "port-forward"):
        assert work not in ran.stdout, (work, ran.tail())


@runs("make build", "make images-oci", "make images-verify")
def test_build_makes_the_two_images_with_docker_or_without_a_daemon() -> None:
    ran = run("make build", timeout=3600)  # a cold daemon-free build takes ~10 min here, a warm one seconds
    assert ran.returncode == 0, ran.tail()
    if cluster.docker_answers():
        for image in cluster.BUILD_WITH_DOCKER:
            assert image in ran.out, (image, ran.tail())
        return
    for marker in cluster.BUILD_WITHOUT_DOCKER:
        assert marker in ran.out, (marker, ran.tail())
    archives = [ROOT / a for a in cluster.BUILD_ARCHIVES]
    assert all(a.exists() for a in archives), ran.tail()
    built = {a: a.stat().st_mtime for a in archives}
    direct = run("make images-oci", timeout=3600)  # the same build, asked for directly: up to date
    assert direct.returncode == 0, direct.tail()
    assert all(a.exists() for a in built)
    verify = run("make images-verify", timeout=600)
    assert verify.returncode == 0, verify.tail()
    for name in ("localhost/login-producer:dev", "localhost/login-consumer:dev"):
        assert name in verify.out, (name, verify.tail())


@runs("make k8s-api-up")
def test_k8s_api_up_starts_a_control_plane_and_prints_the_kubeconfig() -> None:
    cp = k8s_api
    if not cp.built():
        pytest.skip(
            f"the local control plane is not built yet ({cp.BIN}); as tests/k8s_api, this waits for "
            "`make k8s-api-build` (make test gives it K8S_BUILD_BUDGET seconds)"
        )
    was_up = run("make k8s-api-status", timeout=60)
    already = "running (pid" in was_up.stdout and " stopped " not in was_up.stdout
    ran = run("make k8s-api-up", timeout=900)
    try:
        assert ran.returncode == 0, ran.tail()
        kubeconfig = re.search(r"KUBECONFIG=(\S+)", ran.stdout)
        assert kubeconfig, ran.tail()
        nodes = run(f"kubectl --kubeconfig {kubeconfig.group(1)} get nodes --no-headers", timeout=60)
        assert nodes.returncode == 0, nodes.tail()
        assert " Ready " in nodes.stdout, nodes.stdout
    finally:
        if not already:
            run("make k8s-api-down", timeout=300)
    assert Path(kubeconfig.group(1)).exists()
