"""`make help`: its groups are the README's sections, and each README section shows only its own targets.

A help group is the ``##@ Title (details)`` line above a target; a README section is a ``## Title
(details)`` heading. They match on the title before any parenthesis. The README's descriptive sections
(``DESCRIPTIVE``) are not groups and may mention any target; in the others, every make target shown is one
of that group's, or a set-up and test target (make help, make test, ...), which any section may name.
"""

from __future__ import annotations

import re

import pytest

from tests.readme import readme
from tests.readme.conftest import Ran, run
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(600)]

DESCRIPTIVE = {"Layout", "Configuration"}
EVERYWHERE = "Set-up and tests"


def title(heading: str) -> str:
    return re.split(r"\s*[(;]", heading, maxsplit=1)[0].strip()


def groups(ran: Ran) -> dict[str, list[str]]:
    text = re.sub(r"\x1b\[[0-9;]*m", "", ran.stdout)
    found: dict[str, list[str]] = {}
    current = ""
    for line in text.splitlines():
        if line and not line.startswith(" "):
            current = title(line)
            found.setdefault(current, [])
        elif line.strip():
            found[current].append(line.split()[0])
    return found


@pytest.fixture(scope="module")
def help_groups() -> dict[str, list[str]]:
    ran = run("make help", timeout=120)
    assert ran.returncode == 0, ran.tail()
    return groups(ran)


@runs("make help")
def test_make_help_lists_every_target_once_grouped(help_groups: dict[str, list[str]]) -> None:
    every = [t for targets in help_groups.values() for t in targets]
    assert len(every) == len(set(every)), "a target is listed twice"
    assert "Other" not in help_groups, "a target comes before any `##@ Section` line of its file"
    for target in ("help", "init", "setup", "test", "lint", "demo", "run", "kafka-up", "evaluate", "bench"):
        assert target in every, target


def test_help_groups_are_the_readme_sections(help_groups: dict[str, list[str]]) -> None:
    sections = {title(s) for s in readme.sections()}
    assert set(help_groups) == sections - DESCRIPTIVE, (
        f"`make help` groups {sorted(help_groups)} and README sections {sorted(sections - DESCRIPTIVE)} "
        f"(besides the descriptive {sorted(DESCRIPTIVE)}) differ: rename the `##@` line or the `## ` heading"
    )


def test_each_readme_section_shows_its_own_groups_targets(help_groups: dict[str, list[str]]) -> None:
    every = {t for targets in help_groups.values() for t in targets}
    wrong = []
    for shown in readme.shown():
        for target in readme.make_targets(shown.command):
            assert target in every, f"`{shown.command}` (line {shown.line}): `{target}` is not in make help"
            section = title(shown.section)
            if shown.section == readme.INTRO or section in DESCRIPTIVE:
                continue
            if target not in help_groups[section] and target not in help_groups[EVERYWHERE]:
                owner = next(g for g, ts in help_groups.items() if target in ts)
                wrong.append(
                    f"line {shown.line}: `{shown.command}` in section {section!r}, target of {owner!r}"
                )
    assert not wrong, "README sections show targets of other `make help` groups:\n  " + "\n  ".join(wrong)
