"""The services' one Dockerfile (services/Dockerfile, SERVICE build argument + a target per service): slim
base, non-root, dependencies before source; what Tilt needs."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.k8s.conftest import CHART, ROOT

SERVICES = ["producer", "consumer"]
DOCKERFILE = ROOT / "services" / "Dockerfile"
VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [rest for o, rest in self.instructions if o == op]


def substitute(text: str, args: dict[str, str]) -> str:
    """Docker's ${NAME} / $NAME for the build arguments in scope (others, e.g. $PATH, stay)."""
    return VARIABLE.sub(lambda m: args.get(m[1] or m[2], m[0]), text)


def parse(path: Path, build_args: dict[str, str] | None = None) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their instructions (continuations joined), the
    build arguments a stage declares substituted from ``build_args``."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text().splitlines():
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    given = build_args or {}
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    scope: dict[str, str] = {}
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = substitute(rest, global_args).split()
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, words[0]))
            scope = {}
        elif op == "ARG":
            key, _, value = rest.partition("=")
            value = given.get(key, value)
            if stages:
                scope[key] = value
            else:
                global_args[key] = value
        else:
            stages[-1].instructions.append((op, substitute(rest, scope)))
    return global_args, stages


def stages_for(service: str) -> dict[str, Stage]:
    _, stages = parse(DOCKERFILE, {"SERVICE": service})
    return {s.name: s for s in stages}


def copy_sources(rest: str) -> list[str]:
    words = [w for w in shlex.split(rest) if not w.startswith("--")]
    return words[:-1]


def ignored(rel: str, patterns: list[str]) -> bool:
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        for prefix in prefixes:
            if fnmatch.fnmatch(prefix, pattern) or (
                pattern.startswith("**/") and fnmatch.fnmatch(prefix.split("/")[-1], bare)
            ):
                return True
    return False


def dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def test_one_dockerfile_for_both_services() -> None:
    """The Makefile, the Tiltfile and the builder name services/Dockerfile; no per-service copy is left."""
    assert not list((ROOT / "services").glob("*/Dockerfile"))
    for user in ("mk/k8s.mk", "Tiltfile"):
        assert "services/Dockerfile" in (ROOT / user).read_text(), user
    _, stages = parse(DOCKERFILE)
    names = [s.name for s in stages]
    assert names == ["build", "base", "dev", *SERVICES]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("service", SERVICES)
def test_stages_and_user(service: str) -> None:
    stages = stages_for(service)
    assert "dev" in stages, "Tilt builds target dev"
    for stage in stages.values():
        assert "slim" in stage.base or stage.base in stages, f"{stage.name}: {stage.base} is not a slim base"
    for name in (service, "dev"):
        users = stages[name].args("USER")
        assert users, f"{name} sets no USER"
        assert users[-1].isdigit(), "numeric USER, so that runAsNonRoot can verify it"
        assert int(users[-1]) != 0
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert int(stages[service].args("USER")[-1]) == chart["podSecurityContext"]["runAsUser"]


@pytest.mark.parametrize("service", SERVICES)
def test_dependency_layer_before_source(service: str) -> None:
    ops = stages_for(service)["build"].instructions
    copies = [i for i, (op, _) in enumerate(ops) if op == "COPY"]
    installs = [
        i for i, (op, rest) in enumerate(ops) if op == "RUN" and re.search(r"\bpip\b.*\binstall\b", rest)
    ]
    first_source = next(
        i for i in copies if "libs/common" in ops[i][1] or f"services/{service} " in ops[i][1] + " "
    )
    requirements = next(i for i in copies if "requirements.txt" in ops[i][1])
    assert requirements < installs[0] < first_source, "requirements copied and installed before the code"
    assert f"-r services/{service}/requirements.txt" in ops[installs[0]][1]
    assert "--no-deps" in ops[installs[-1]][1], "the code layer resolves no dependency"
    for i in installs:
        assert "--python /opt/venv/bin/python" in ops[i][1], "pip installs into the pip-less virtualenv"


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_exist_in_the_build_context(service: str) -> None:
    patterns = dockerignore()
    for stage in stages_for(service).values():
        for rest in stage.args("COPY"):
            if "--from=" in rest:
                continue
            for source in copy_sources(rest):
                assert "$" not in source, f"COPY {source}: a build argument left unset"
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = dockerignore()
    for heavy in (".venv", ".git", ".cache", "charts", "tests"):
        assert ignored(heavy, patterns), heavy
    assert not ignored("libs/common/src/login_common/contract.py", patterns)


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_and_port_match_the_project_and_chart(service: str) -> None:
    stage = stages_for(service)[service]
    scripts = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    entrypoint = stage.args("ENTRYPOINT")[-1]
    assert yaml.safe_load(entrypoint) == [f"login-{service}"]
    assert f"login-{service}" in scripts
    port = yaml.safe_load((CHART / "values.yaml").read_text())[service]["metricsPort"]
    assert stage.args("EXPOSE") == [str(port)]
    assert f"METRICS_PORT={port}" in " ".join(stage.args("ENV"))
