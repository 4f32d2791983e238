"""Each service's requirements.txt (the Docker dependency layer) matches its pyproject dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _names(specs: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", s.strip(), maxsplit=1)[0].lower() for s in specs if s.strip()}


@pytest.mark.parametrize("service", ["producer", "consumer"])
def test_requirements_match_pyproject(service: str) -> None:
    base = ROOT / "services" / service
    project = tomllib.loads((base / "pyproject.toml").read_text())["project"]
    declared = _names(project["dependencies"]) - {"login-common"}
    common = tomllib.loads((ROOT / "libs/common/pyproject.toml").read_text())["project"]
    declared |= _names(common["dependencies"])
    lines = [ln for ln in (base / "requirements.txt").read_text().splitlines() if not ln.startswith("#")]
    assert _names(lines) == declared


def test_every_requirement_is_pinned() -> None:
    pinned = {
        ln.split("==")[0].lower().replace("_", "-")
        for ln in (ROOT / "requirements/constraints.txt").read_text().splitlines()
        if "==" in ln
    }
    for service in ("producer", "consumer"):
        lines = (ROOT / "services" / service / "requirements.txt").read_text().splitlines()
        for name in _names([ln for ln in lines if not ln.startswith("#")]):
            assert name.replace("_", "-") in pinned, f"{name} is not pinned in constraints.txt"
