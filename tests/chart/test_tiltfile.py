"""The Tiltfile, executed by a Starlark interpreter (go.starlark.net) with Tilt's functions stubbed, in
both of its modes (LOGIN_STREAM_CLUSTER: kind, node; docs/tilt.md).

The stubs are Starlark functions with the parameters of the Tilt functions they stand for (Starlark
itself rejects an unknown or doubled keyword) that record each call; the test then checks the calls:
every path named exists, the images and resources match the chart, the services wait for Kafka, the
node mode's custom_build runs a make target that exists and its restart loop restarts.
(Stubs are written in Starlark rather than Python: starlark-go crashes on Python callbacks called
with keyword arguments.) Tilt's modules are not Starlark values here (go.starlark.net has no struct):
``os.getenv`` is rewritten to a stub reading the mode given to the test, and load_dynamic() returns
the stubs of the extension's symbols; tests/chart/test_tilt_binary.py evaluates the file with the real
Tilt built here.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import starlark_go
import yaml

from tests.chart.conftest import ROOT, Render, find

TILTFILE = ROOT / "Tiltfile"

# Tilt's functions used by the Tiltfile and the parameters each accepts (docs.tilt.dev/api.html; Tilt
# v0.34.0's internal/tiltfile/*.go unpackArgs calls).
DOCKER_BUILD = [
    *("ref", "context", "build_args", "dockerfile", "dockerfile_contents", "live_update"),
    *("match_in_env_vars", "ignore", "only", "entrypoint", "target", "ssh", "network", "secret"),
    *("extra_tag", "container_args", "cache_from", "pull", "platform", "env"),
]
SIGNATURES: dict[str, list[str]] = {
    "allow_k8s_contexts": ["contexts"],
    "update_settings": ["max_parallel_updates", "k8s_upsert_timeout_secs", "suppress_unused_image_warnings"],
    "local_resource": [
        *("name", "cmd", "deps", "trigger_mode", "resource_deps", "ignore", "auto_init", "serve_cmd"),
        *("cmd_bat", "serve_cmd_bat", "allow_parallel", "links", "tags", "env", "serve_env"),
        *("readiness_probe", "dir", "serve_dir", "labels"),
    ],
    "docker_build": DOCKER_BUILD,
    "custom_build": [
        *("ref", "command", "deps", "tag", "disable_push", "skips_local_docker", "live_update"),
        *("match_in_env_vars", "ignore", "entrypoint", "container_args", "command_bat_val"),
        *("outputs_image_ref_to", "command_bat", "image_deps", "env", "dir"),
    ],
    "sync": ["local_path", "remote_path"],
    "run": ["cmd", "trigger", "echo_off"],
    "fall_back_on": ["files"],
    "helm": ["pathToChartDir", "name", "namespace", "values", "set", "kube_version", "skip_crds"],
    "k8s_yaml": ["yaml", "allow_duplicates"],
    "k8s_resource": [
        *("workload", "new_name", "port_forwards", "extra_pod_selectors", "trigger_mode"),
        *("resource_deps", "objects", "auto_init", "pod_readiness", "links", "labels", "discovery_strategy"),
    ],
    "watch_file": ["file_path"],
    "link": ["url", "name"],
}
# Extensions (load("ext://...")) and the parameters of the symbols they export.
EXTENSIONS: dict[str, dict[str, list[str]]] = {
    "restart_process": {
        "docker_build_with_restart": list(
            dict.fromkeys(
                [
                    *("ref", "context", "entrypoint", "live_update", "base_suffix", "restart_file"),
                    *("trigger", "exit_policy", *DOCKER_BUILD[2:]),
                ]
            )
        ),
    },
}
LOAD = re.compile(r'^load\(\s*"ext://(?P<ext>[\w-]+)"\s*,(?P<names>[^)]*)\)\s*$', re.MULTILINE)
LOAD_DYNAMIC = re.compile(r'load_dynamic\(\s*"ext://(?P<ext>[\w-]+)"\s*\)\[\s*"(?P<name>\w+)"\s*\]')
MODES = ("kind", "node")


def stub(name: str, params: list[str], records: str | None = None) -> str:
    """One line of Starlark: ``def name(p1 = None, ...): return _record("name", {"p1": p1, ...})``."""
    args = ", ".join(f"{p} = None" for p in params)
    record = ", ".join(f'"{p}": {p}' for p in params)
    return f'def {name}({args}): return _record("{records or name}", {{{record}}})'


@dataclass
class Tilt:
    calls: list[tuple[str, dict[str, Any]]]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for n, args in self.calls if n == name]


def execute(source: str, functions: dict[str, list[str]], env: dict[str, str] | None = None) -> Tilt:
    prelude = [
        "_calls = []",
        "def _record(name, args): _calls.append([name, args]); return dict(tilt = name, **args)",
        f"_env = {dict(env or {})!r}",
        "def _os_getenv(key, default = None): return _env.get(key, default)",
        *(stub(name, params) for name, params in functions.items()),
    ]
    # Tilt's dialect: top-level for/if, set(), recursion.
    starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    interpreter = starlark_go.Starlark()
    # one exec: the stubs append to _calls, which a later exec would see frozen. Error line numbers
    # are the Tiltfile's plus len(prelude).
    source = source.replace("os.getenv(", "_os_getenv(")
    interpreter.exec("\n".join(prelude) + "\n" + source, filename=str(TILTFILE))
    calls = interpreter.get("_calls")
    return Tilt([(name, {k: v for k, v in args.items() if v is not None}) for name, args in calls])


def run_tiltfile(mode: str = "kind") -> Tilt:
    """The Tiltfile run with LOGIN_STREAM_CLUSTER=mode (kind: the variable unset, its default)."""
    functions = dict(SIGNATURES)

    def extension(ext: str, symbol: str) -> str:
        assert ext in EXTENSIONS, f"load of an unknown extension ext://{ext}"
        assert symbol in EXTENSIONS[ext], f"ext://{ext} exports no {symbol}"
        functions[symbol] = EXTENSIONS[ext][symbol]
        return symbol

    def strip_load(match: re.Match[str]) -> str:
        for symbol in re.findall(r'"(\w+)"', match["names"]):
            extension(match["ext"], symbol)
        return ""

    source = LOAD.sub(strip_load, TILTFILE.read_text())
    source = LOAD_DYNAMIC.sub(lambda m: extension(m["ext"], m["name"]), source)
    assert "load(" not in source, "a load() the test does not understand"
    assert "load_dynamic(" not in source, "a load_dynamic() the test does not understand"
    assert not re.search(r"\b(?!os\.getenv\()(os|config|sys|k8s_context)\b[.(]", source), (
        "a Tilt module function the test does not stub (only os.getenv is)"
    )
    return execute(source, functions, {} if mode == "kind" else {"LOGIN_STREAM_CLUSTER": mode})


@pytest.fixture(scope="module", params=MODES)
def tilt(request: pytest.FixtureRequest) -> Tilt:
    mode: str = request.param
    return run_tiltfile(mode)


def images(tilt: Tilt) -> dict[str, dict[str, Any]]:
    builds = tilt.named("docker_build") + tilt.named("docker_build_with_restart") + tilt.named("custom_build")
    return {b["ref"]: b for b in builds}


def make_dry_run(command: str) -> str:
    """What `make -n` prints for a Tiltfile command (``make <args>``), with EXPECTED_REF as Tilt sets it."""
    argv = shlex.split(command)
    assert argv[0] == "make", command
    env = {"PATH": "/usr/bin:/bin", "EXPECTED_REF": "localhost/login-x:tilt-build-1"}
    out = subprocess.run(
        ["make", "-n", *argv[1:]], cwd=ROOT, capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert out.returncode == 0, f"make -n {' '.join(argv[1:])}: {out.stderr}"
    return out.stdout


def test_every_path_named_exists(tilt: Tilt) -> None:
    paths: list[str] = []
    for build in images(tilt).values():
        if "command" in build:  # custom_build
            paths += build["deps"]
        else:
            paths += [build["context"], build["dockerfile"], *build.get("only", [])]
        for step in build.get("live_update", []):
            if step["tilt"] == "sync":
                paths.append(step["local_path"])
            elif step["tilt"] == "fall_back_on":
                paths += step["files"]
    for chart in tilt.named("helm"):
        paths += [chart["pathToChartDir"], *chart.get("values", [])]
    paths += [w["file_path"] for w in tilt.named("watch_file")]
    for resource in tilt.named("local_resource"):
        paths += resource.get("deps", [])
    assert len(paths) > 10
    missing = [p for p in paths if not (ROOT / p).exists()]
    assert not missing, f"the Tiltfile names paths that do not exist: {missing}"


def dev_stage(dockerfile: str, service: str) -> str:
    dev = (ROOT / dockerfile).read_text()
    return dev[dev.index("AS dev") :].replace("${SERVICE}", service)


def test_both_images_build_the_dev_target_with_live_update(tilt: Tilt) -> None:
    built = images(tilt)
    assert {ref.removeprefix("localhost/") for ref in built} == {"login-producer", "login-consumer"}
    for ref, build in built.items():
        name = ref.removeprefix("localhost/")
        service = name.removeprefix("login-")
        syncs = {s["local_path"]: s["remote_path"] for s in build["live_update"] if s["tilt"] == "sync"}
        assert syncs == {
            "libs/common/src": "/app/libs/common/src",
            f"services/{service}/src": f"/app/services/{service}/src",
        }
        assert build["live_update"][0]["tilt"] == "fall_back_on", "fall_back_on must come first"
        if "command" in build:
            # node: the daemon-free builder packs the same stage, named as Tilt expects, then imports it
            assert build["entrypoint"][-1] == name
            dry = make_dry_run(build["command"])
            assert "login_images build --dockerfile services/Dockerfile --target dev" in dry
            assert f"--build-arg SERVICE={service}" in dry
            assert '--name "$EXPECTED_REF"' in dry
            node_containerd = "--address /run/login-stream-node/containerd.sock --namespace k8s.io"
            assert f"login_images import {node_containerd}" in dry
            # nothing for Docker to find or push; every synced path is one Tilt watches for this build
            assert build["skips_local_docker"] is True
            assert build["disable_push"] is True
            assert all(any(p == d or p.startswith(d + "/") for d in build["deps"]) for p in syncs)
            assert "services/Dockerfile" in build["deps"]
            # what the image leaves out (.dockerignore's patterns anywhere in the tree) triggers no build
            dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
            assert {p for p in dockerignore if p.startswith("**/")} <= set(build["ignore"])
            dockerfile = "services/Dockerfile"
        else:
            assert build["target"] == "dev"
            assert build["entrypoint"] == [name]
            assert build["build_args"] == {"SERVICE": service}
            dockerfile = build["dockerfile"]
        # the sync targets are where the dev stage puts the sources (and PYTHONPATH points)
        dev = dev_stage(dockerfile, service)
        for remote in syncs.values():
            assert f" {remote}\n" in dev
            assert remote in dev[dev.index("PYTHONPATH") :].splitlines()[0]


def test_images_match_the_chart(tilt: Tilt, render: Render) -> None:
    (chart,) = tilt.named("helm")
    objs = render(*(ROOT / v for v in chart["values"]))
    repos = {
        c["image"].rsplit(":", 1)[0]
        for d in find(objs, "Deployment")
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert repos == set(images(tilt))
    assert not find(objs, "Pod"), "no helm test pod under Tilt"
    # k8s_yaml deploys exactly that helm() output
    assert [y["yaml"]["tilt"] for y in tilt.named("k8s_yaml")] == ["helm"]


def test_resources_exist_and_wait_for_kafka(tilt: Tilt, render: Render) -> None:
    (chart,) = tilt.named("helm")
    objs = render(*(ROOT / v for v in chart["values"]))
    deployments = {d["metadata"]["name"]: d for d in find(objs, "Deployment")}
    local = {r["name"] for r in tilt.named("local_resource")}
    resources = tilt.named("k8s_resource")
    assert {r["workload"] for r in resources} == set(deployments)
    for resource in resources:
        assert "kafka-ready" in resource["resource_deps"]
        assert set(resource["resource_deps"]) <= local
        container = deployments[resource["workload"]]["spec"]["template"]["spec"]["containers"][0]
        port = container["ports"][0]["containerPort"]
        assert resource["port_forwards"] == [f"{port}:{port}"]
    kafka = next(r for r in tilt.named("local_resource") if r["name"] == "kafka-ready")
    assert "--for=condition=Ready" in kafka["cmd"]
    for r in tilt.named("local_resource"):
        assert set(r.get("resource_deps", [])) <= local


def test_prometheus_is_port_forwarded_and_grafana_on_kind(tilt: Tilt) -> None:
    serves = " ".join(r.get("serve_cmd", "") for r in tilt.named("local_resource"))
    assert "port-forward svc/kube-prometheus-stack-prometheus 9090:9090" in serves
    node = any(b.get("command") for b in images(tilt).values())
    # the node's kube-prometheus-stack runs no Grafana (k8s/values/local-node/kube-prometheus-stack.yaml)
    local_node = yaml.safe_load((ROOT / "k8s/values/local-node/kube-prometheus-stack.yaml").read_text())
    assert local_node["grafana"]["enabled"] is False
    assert ("port-forward svc/kube-prometheus-stack-grafana 3000:80" in serves) is not node


def test_node_mode_deploys_the_nodes_overlay_on_its_context() -> None:
    kind, node = run_tiltfile("kind"), run_tiltfile("node")
    assert [c["contexts"] for c in kind.named("allow_k8s_contexts")] == ["kind-login-stream"]
    # the node's kubeconfig names this context (login_devtools/k8s_api.py's write_kubeconfig)
    assert [c["contexts"] for c in node.named("allow_k8s_contexts")] == ["login-stream-k8s-api"]
    api = (ROOT / "tools/devtools/src/login_devtools/k8s_api.py").read_text()
    assert 'context: str = "login-stream-k8s-api"' in api
    ((kind_chart,), (node_chart,)) = kind.named("helm"), node.named("helm")
    assert node_chart["values"] == [
        "k8s/values/login-stream.yaml",
        "k8s/values/local-node/login-stream.yaml",
        "k8s/values/tilt.yaml",
    ]
    assert kind_chart["values"] == ["k8s/values/login-stream.yaml", "k8s/values/tilt.yaml"]
    # the node mode fetches no extension; kind keeps restart_process
    assert not node.named("docker_build_with_restart")
    assert len(kind.named("docker_build_with_restart")) == 2


def test_an_unknown_mode_fails_naming_both() -> None:
    with pytest.raises(starlark_go.EvalError, match=r"LOGIN_STREAM_CLUSTER=minikube: use kind .* or node"):
        run_tiltfile("minikube")


RESTART_FILE = "/app/.restart-proc"
FAKE_SERVICE = """echo "start $$" >> "$LOG"
trap 'echo "term $$" >> "$LOG"; exit 0' TERM
[ -n "$EXIT_WITH" ] && exit "$EXIT_WITH"
while :; do sleep 0.1; done
"""


def restart_loop(tmp_path: Path, exit_with: str = "") -> tuple[subprocess.Popen[str], Path, Path]:
    """The node mode's container command, run with sh and a fake service; the restart file under tmp_path."""
    (build,) = [b for b in run_tiltfile("node").named("custom_build") if b["ref"].endswith("consumer")]
    sh, dash_c, script, name, service = build["entrypoint"]
    assert (sh, dash_c, service) == ("sh", "-c", "login-consumer")
    assert f"f={RESTART_FILE}\n" in script
    restart, log = tmp_path / "restart-proc", tmp_path / "log"
    fake = tmp_path / "login-consumer"
    fake.write_text(FAKE_SERVICE)
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "LOG": str(log), "EXIT_WITH": exit_with}
    proc = subprocess.Popen(
        [sh, dash_c, script.replace(RESTART_FILE, str(restart)), name, service], env=env, text=True
    )
    return proc, restart, log


def wait_for(what: str, check: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def lines(log: Path, word: str) -> list[str]:
    return [line for line in log.read_text().splitlines() if line.startswith(word)] if log.exists() else []


def test_the_node_restart_loop_restarts_on_the_live_update_file_and_passes_sigterm(tmp_path: Path) -> None:
    proc, restart, log = restart_loop(tmp_path)
    try:
        wait_for("the service to start", lambda: len(lines(log, "start")) == 1)
        # the live update's run() step writes the file: the service gets SIGTERM and starts again
        restart.write_text("now\n")
        wait_for("a restart", lambda: len(lines(log, "start")) == 2)
        assert len(lines(log, "term")) == 1
        assert not restart.exists(), "the loop removes the file it acted on"
        assert lines(log, "start")[0] != lines(log, "start")[1], "a new process"
        # the kubelet's SIGTERM to the container's command reaches the service; the loop ends with its status
        proc.terminate()
        assert proc.wait(timeout=15) == 0
        assert len(lines(log, "term")) == 2
    finally:
        proc.kill()


def test_the_node_restart_loop_ends_with_the_services_exit_status(tmp_path: Path) -> None:
    proc, _, log = restart_loop(tmp_path, exit_with="3")
    try:
        assert proc.wait(timeout=15) == 3, "the kubelet must see the failure"
        assert len(lines(log, "start")) == 1, "no restart without the file"
    finally:
        proc.kill()


def test_the_node_image_target_refuses_without_tilts_reference() -> None:
    def make(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["make", "--no-print-directory", "tilt-node-image", *args], cwd=ROOT, capture_output=True,
            text=True, env={"PATH": "/usr/bin:/bin", **env}, timeout=60, check=False,
        )  # fmt: skip

    out = make("TILT_SERVICE=consumer")
    assert out.returncode == 2
    assert "EXPECTED_REF is not set (Tilt's custom_build sets it)" in out.stderr
    out = make("TILT_SERVICE=kafka", EXPECTED_REF="localhost/login-kafka:tilt-build-1")
    assert out.returncode == 2
    assert "TILT_SERVICE='kafka': producer or consumer" in out.stderr


def test_a_wrong_parameter_fails() -> None:
    with pytest.raises(starlark_go.EvalError, match="unexpected keyword argument"):
        execute('k8s_resource("x", port_forward = ["1:1"])', SIGNATURES)
    assert execute('k8s_resource("x", port_forwards = ["1:1"])', SIGNATURES).named("k8s_resource") == [
        {"workload": "x", "port_forwards": ["1:1"]}
    ]
