"""The Tiltfile, executed by a Starlark interpreter (go.starlark.net) with Tilt's functions stubbed.

The stubs are Starlark functions with the parameters of the Tilt functions they stand for (Starlark
itself rejects an unknown or doubled keyword) that record each call; the test then checks the calls:
every path named exists, the images and resources match the chart, the services wait for Kafka.
(Stubs are written in Starlark rather than Python: starlark-go crashes on Python callbacks called
with keyword arguments.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import pytest
import starlark_go

from tests.k8s.conftest import ROOT, Render, find

TILTFILE = ROOT / "Tiltfile"

# Tilt's functions used by the Tiltfile and the parameters each accepts (docs.tilt.dev/api.html).
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


def stub(name: str, params: list[str]) -> str:
    """One line of Starlark: ``def name(p1 = None, ...): return _record("name", {"p1": p1, ...})``."""
    args = ", ".join(f"{p} = None" for p in params)
    record = ", ".join(f'"{p}": {p}' for p in params)
    return f'def {name}({args}): return _record("{name}", {{{record}}})'


@dataclass
class Tilt:
    calls: list[tuple[str, dict[str, Any]]]

    def named(self, name: str) -> list[dict[str, Any]]:
        return [args for n, args in self.calls if n == name]


def execute(source: str, functions: dict[str, list[str]]) -> Tilt:
    prelude = [
        "_calls = []",
        "def _record(name, args): _calls.append([name, args]); return dict(tilt = name, **args)",
        *(stub(name, params) for name, params in functions.items()),
    ]
    # Tilt's dialect: top-level for/if, set(), recursion.
    starlark_go.configure_starlark(allow_set=True, allow_global_reassign=True, allow_recursion=True)
    interpreter = starlark_go.Starlark()
    # one exec: the stubs append to _calls, which a later exec would see frozen. Error line numbers
    # are the Tiltfile's plus len(prelude).
    interpreter.exec("\n".join(prelude) + "\n" + source, filename=str(TILTFILE))
    calls = interpreter.get("_calls")
    return Tilt([(name, {k: v for k, v in args.items() if v is not None}) for name, args in calls])


def run_tiltfile() -> Tilt:
    functions = dict(SIGNATURES)

    def strip_load(match: re.Match[str]) -> str:
        ext = match["ext"]
        assert ext in EXTENSIONS, f"load of an unknown extension ext://{ext}"
        for symbol in re.findall(r'"(\w+)"', match["names"]):
            assert symbol in EXTENSIONS[ext], f"ext://{ext} exports no {symbol}"
            functions[symbol] = EXTENSIONS[ext][symbol]
        return ""

    source = LOAD.sub(strip_load, TILTFILE.read_text())
    assert "load(" not in source, "a load() the test does not understand"
    return execute(source, functions)


@pytest.fixture(scope="module")
def tilt() -> Tilt:
    return run_tiltfile()


def images(tilt: Tilt) -> dict[str, dict[str, Any]]:
    builds = tilt.named("docker_build") + tilt.named("docker_build_with_restart")
    return {b["ref"]: b for b in builds}


def test_every_path_named_exists(tilt: Tilt) -> None:
    paths: list[str] = []
    for build in images(tilt).values():
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


def test_both_images_build_the_dev_target_with_live_update(tilt: Tilt) -> None:
    built = images(tilt)
    assert set(built) == {"login-producer", "login-consumer"}
    for ref, build in built.items():
        service = ref.removeprefix("login-")
        assert build["target"] == "dev"
        assert build["entrypoint"] == [ref]
        syncs = {s["local_path"]: s["remote_path"] for s in build["live_update"] if s["tilt"] == "sync"}
        assert syncs == {
            "libs/common/src": "/app/libs/common/src",
            f"services/{service}/src": f"/app/services/{service}/src",
        }
        # the sync targets are where the dev stage puts the sources (and PYTHONPATH points), with the
        # build arguments the Tiltfile passes
        assert build["build_args"] == {"SERVICE": service}
        dockerfile = (ROOT / build["dockerfile"]).read_text()
        dev = dockerfile[dockerfile.index("AS dev") :]
        for name, value in build["build_args"].items():
            dev = dev.replace("${" + name + "}", value)
        for remote in syncs.values():
            assert f" {remote}\n" in dev
            assert remote in dev[dev.index("PYTHONPATH") :].splitlines()[0]
        assert build["live_update"][0]["tilt"] == "fall_back_on", "fall_back_on must come first"


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


def test_grafana_is_port_forwarded(tilt: Tilt) -> None:
    serves = " ".join(r.get("serve_cmd", "") for r in tilt.named("local_resource"))
    assert "port-forward svc/kube-prometheus-stack-grafana 3000:80" in serves
    assert "port-forward svc/kube-prometheus-stack-prometheus 9090:9090" in serves


def test_a_wrong_parameter_fails() -> None:
    with pytest.raises(starlark_go.EvalError, match="unexpected keyword argument"):
        execute('k8s_resource("x", port_forward = ["1:1"])', SIGNATURES)
    assert execute('k8s_resource("x", port_forwards = ["1:1"])', SIGNATURES).named("k8s_resource") == [
        {"workload": "x", "port_forwards": ["1:1"]}
    ]
