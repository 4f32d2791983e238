"""The service Dockerfiles: slim base, non-root, dependencies before source; what Tilt needs."""

from __future__ import annotations

import fnmatch
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.chart.conftest import CHART, ROOT

SERVICES = ["producer", "consumer"]


@dataclass
class Stage:
    name: str
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, op: str) -> list[str]:
        return [rest for o, rest in self.instructions if o == op]


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """ARGs before the first FROM, and the stages with their instructions (continuations joined)."""
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
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in lines:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "FROM":
            words = rest.split()
            base = words[0]
            for key, value in global_args.items():
                base = base.replace(f"${{{key}}}", value)
            name = words[2] if len(words) > 2 and words[1].upper() == "AS" else str(len(stages))
            stages.append(Stage(name, base))
        elif not stages and op == "ARG":
            key, _, value = rest.partition("=")
            global_args[key] = value
        else:
            stages[-1].instructions.append((op, rest))
    return global_args, stages


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


@pytest.mark.parametrize("service", SERVICES)
def test_stages_and_user(service: str) -> None:
    _, stages = parse(ROOT / "services" / service / "Dockerfile")
    names = [s.name for s in stages]
    assert names[-1] == "runtime", "the default (last) stage is the runtime image"
    assert "dev" in names, "Tilt builds target dev"
    for stage in stages:
        assert "slim" in stage.base or stage.base in names, f"{stage.name}: {stage.base} is not a slim base"
    for name in ("runtime", "dev"):
        stage = next(s for s in stages if s.name == name)
        users = stage.args("USER")
        assert users, f"{name} sets no USER"
        assert users[-1].isdigit(), "numeric USER, so that runAsNonRoot can verify it"
        assert int(users[-1]) != 0
    chart = yaml.safe_load((CHART / "values.yaml").read_text())
    assert (
        int(next(s for s in stages if s.name == "runtime").args("USER")[-1])
        == chart["podSecurityContext"]["runAsUser"]
    )


@pytest.mark.parametrize("service", SERVICES)
def test_dependency_layer_before_source(service: str) -> None:
    _, stages = parse(ROOT / "services" / service / "Dockerfile")
    build = stages[0]
    ops = build.instructions
    copies = [i for i, (op, _) in enumerate(ops) if op == "COPY"]
    installs = [i for i, (op, rest) in enumerate(ops) if op == "RUN" and "pip install" in rest]
    first_source = next(
        i for i in copies if "libs/common" in ops[i][1] or f"services/{service} " in ops[i][1] + " "
    )
    requirements = next(i for i in copies if "requirements.txt" in ops[i][1])
    assert requirements < installs[0] < first_source, "requirements copied and installed before the code"
    assert "-r services/" in ops[installs[0]][1]
    assert "--no-deps" in ops[installs[-1]][1], "the code layer resolves no dependency"


@pytest.mark.parametrize("service", SERVICES)
def test_copy_sources_exist_in_the_build_context(service: str) -> None:
    _, stages = parse(ROOT / "services" / service / "Dockerfile")
    patterns = dockerignore()
    for stage in stages:
        for rest in stage.args("COPY"):
            if "--from=" in rest:
                continue
            for source in copy_sources(rest):
                assert (ROOT / source).exists(), f"COPY {source}: not in the repository"
                assert not ignored(source, patterns), f"COPY {source}: excluded by .dockerignore"


def test_dockerignore_keeps_the_context_small() -> None:
    patterns = dockerignore()
    for heavy in (".venv", ".git", ".cache", "charts", "tests"):
        assert ignored(heavy, patterns), heavy
    assert not ignored("libs/common/src/login_common/contract.py", patterns)


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_and_port_match_the_project_and_chart(service: str) -> None:
    _, stages = parse(ROOT / "services" / service / "Dockerfile")
    runtime = next(s for s in stages if s.name == "runtime")
    base = next(s for s in stages if s.name == runtime.base)
    scripts = tomllib.loads((ROOT / "services" / service / "pyproject.toml").read_text())["project"][
        "scripts"
    ]
    entrypoint = base.args("ENTRYPOINT")[-1]
    assert yaml.safe_load(entrypoint) == [f"login-{service}"]
    assert f"login-{service}" in scripts
    port = yaml.safe_load((CHART / "values.yaml").read_text())[service]["metricsPort"]
    assert base.args("EXPOSE") == [str(port)]
    assert f"METRICS_PORT={port}" in " ".join(base.args("ENV"))
