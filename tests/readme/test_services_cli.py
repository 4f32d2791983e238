"""README "Configuration": `.venv/bin/login-producer --help` and `.venv/bin/login-consumer --help` list
every variable of the README's table, with the default the table gives, for the services the table says
use it; a bad value stops start-up with exit code 2 and a message naming the variable and what it
accepts. `make init` installs them."""

from __future__ import annotations

import re

import pytest

from tests.readme import readme
from tests.readme.conftest import run, user_env
from tests.readme.registry import runs

pytestmark = [pytest.mark.usefixtures("readme_tier"), pytest.mark.timeout(1800)]
PRODUCER = ".venv/bin/login-producer --help"
CONSUMER = ".venv/bin/login-consumer --help"


def table() -> list[tuple[list[str], str, str]]:
    """(variables, default cell, used by) of each row of the Configuration table."""
    text = readme.README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        names: list[str] = []
        for span in re.findall(r"`([^`]+)`", cells[0]):
            if span.endswith("(_FILE)"):
                names += [span[: -len("(_FILE)")], span[: -len("(_FILE)")] + "_FILE"]
            else:
                names.append(span)
        rows.append((names, cells[1], cells[2]))
    return rows


def default_for(cell: str, service: str) -> str | None:
    """The default the README gives a service: ``consumer `8000`, producer `8001``` per service, else
    the cell's first code span; None when the cell names none."""
    per = re.search(rf"{service} `([^`]+)`", cell)
    first = re.search(r"`([^`]+)`", cell)
    return per.group(1) if per else first.group(1) if first else None


def listed(help_text: str) -> dict[str, str]:
    """Variable -> its default, from the --help epilog."""
    return dict(re.findall(r"^  ([A-Z][A-Z0-9_]+) +default: ?(.*)$", help_text, re.M))


@runs("make init", PRODUCER, CONSUMER)
def test_help_lists_every_variable_of_the_readme_table_with_its_default() -> None:
    init = run("make init", timeout=900)
    assert init.returncode == 0, init.tail()
    helps = {}
    for name, command in (("producer", PRODUCER), ("consumer", CONSUMER)):
        ran = run(command, timeout=60)
        assert ran.returncode == 0, ran.tail()
        helps[name] = listed(ran.stdout)
    rows = table()
    assert len(rows) >= 10, rows
    for names, default_cell, used_by in rows:
        services = ["producer", "consumer"] if used_by.startswith("both") else [used_by.split(":")[0]]
        for service in services:
            have = helps[service]
            for name in names:
                if name.endswith("*"):
                    assert any(v.startswith(name[:-1]) for v in have), (service, name)
                    continue
                assert name in have, f"{name} (README: used by {used_by}) is not in login-{service} --help"
                expected = default_for(default_cell, service)
                if expected is not None and names.index(name) == 0:
                    assert have[name].strip().lower() == expected.lower(), (
                        service,
                        name,
                        have[name],
                        expected,
                    )


def test_a_bad_value_stops_start_up_with_exit_2_naming_the_variable() -> None:
    ran = run(".venv/bin/login-producer --count 1 --out /dev/null", env=user_env(RATE="-1"), timeout=60)
    assert ran.returncode == 2, ran.tail()
    assert "RATE='-1'" in ran.stderr
    assert "Accepted: Events per second" in ran.stderr
    assert "Traceback" not in ran.out
