"""Fixtures of the offline Kubernetes checks: the helm binary, the CRDs, a schema validator, chart renders.

Tools (helm, actionlint) come from PATH or `make tools` (.cache/bin). CRDs come from CRD_DIR (.ci/run
points it at ../shared/crds), else ../shared/crds or .cache/crds (`make crds`) beside the checkout.
`make setup` (run by `make test`) provides them all, so a missing tool or CRD set fails, naming the fix:
a check is never skipped for something the set-up could have installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pytest
import yaml

from tests.chart.kube_schemas import CRD_GROUPS, Obj, Validator, crd_files, crds_in, describe, load_all

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "login-stream"
TOOLS_BIN = ROOT / ".cache" / "bin"
RELEASE = "login-stream"
NAMESPACE = "login-stream"


def unavailable(reason: str) -> None:
    """Fail: `make setup` installs every tool and finds the CRDs, so a missing one is a broken set-up."""
    pytest.fail(f"{reason} (`make setup` provides it)", pytrace=False)


def tool(name: str) -> str:
    found = shutil.which(name, path=f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        unavailable(f"{name} not found in .cache/bin or PATH: run `make tools`")
        raise AssertionError  # unreachable: unavailable() fails
    return found


@pytest.fixture(scope="session")
def helm() -> str:
    return tool("helm")


def find_crd_dir() -> tuple[Path | None, str]:
    named = os.environ.get("CRD_DIR", "")
    candidates = [Path(named)] if named else [ROOT / ".cache" / "crds", ROOT.parent / "shared" / "crds"]
    for candidate in candidates:
        if candidate.is_dir() and any(True for _ in crds_in(crd_files(candidate))):
            return candidate, ""
    where = f"CRD_DIR={named}" if named else " or ".join(str(c) for c in candidates)
    return (
        None,
        f"no CustomResourceDefinitions found in {where}: "
        "run `make crds` (Maven Central, Go modules) or set CRD_DIR",
    )


@pytest.fixture(scope="session")
def crd_dir() -> Path:
    found, reason = find_crd_dir()
    if found is None:
        unavailable(reason)
        raise AssertionError
    return found


@pytest.fixture(scope="session")
def validator() -> Validator:
    """Built-in kinds always; custom resources when CRDs were found (see ``schema_problems``)."""
    found, _ = find_crd_dir()
    return Validator(found)


def schema_problems(objs: list[Obj], validator: Validator) -> list[str]:
    """Schema violations of ``objs``, as lines. Custom resources without CRDs: fail (after the built-in
    kinds have been checked)."""
    problems: list[str] = []
    unchecked: list[str] = []
    for obj in objs:
        group = str(obj.get("apiVersion", "")).rpartition("/")[0]
        if group in CRD_GROUPS and not validator.crds:
            unchecked.append(describe(obj))
            continue
        problems += [f"{describe(obj)}: {e}" for e in validator.errors(obj)]
    if unchecked and not problems:
        unavailable(f"{find_crd_dir()[1]} (unchecked: {', '.join(unchecked)})")
    return problems


@cache
def _render(helm: str, values: tuple[str, ...], sets: tuple[str, ...]) -> tuple[Obj, ...]:
    cmd = [helm, "template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for path in values:
        cmd += ["--values", path]
    for item in sets:
        cmd += ["--set", item]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RenderError(out.stderr.strip())
    return tuple(load_all(out.stdout))


class RenderError(Exception):
    pass


Render = Callable[..., list[Obj]]


@pytest.fixture(scope="session")
def render(helm: str) -> Render:
    """``render("ci/full-values.yaml", **{"keda.enabled": "true"})``: the chart's objects as dicts.

    Value files are relative to the chart (or absolute); keyword arguments are --set items.
    """

    def run(*values: str | Path, **sets: object) -> list[Obj]:
        files = tuple(str(v if Path(v).is_absolute() else CHART / v) for v in values)
        items = tuple(f"{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in sorted(sets.items()))
        return list(_render(helm, files, items))

    return run


def render_notes(helm: str, tmp_path: Path, *sets: str) -> str:
    """NOTES.txt as `helm install` would print it (it renders only on install): through tpl, in a copy
    of the chart; ``sets`` are --set items."""
    chart = tmp_path / "login-stream"
    shutil.copytree(CHART, chart, symlinks=False)
    shutil.copy(chart / "templates" / "NOTES.txt", chart / "files" / "notes.txt")
    (chart / "templates" / "zz-notes.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes}\n"
        'data:\n  notes: {{ tpl (.Files.Get "files/notes.txt") . | toJson }}\n'
    )
    cmd = [helm, "template", RELEASE, str(chart), "-n", NAMESPACE, "-s", "templates/zz-notes.yaml"]
    for item in sets:
        cmd += ["--set", item]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    notes: str = yaml.safe_load(out.stdout)["data"]["notes"]
    return notes


def find(objs: list[Obj], kind: str, name: str | None = None) -> list[Obj]:
    return [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def one(objs: list[Obj], kind: str, name: str | None = None) -> Obj:
    found = find(objs, kind, name)
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]
