"""login_devtools/service_env.py: make's command-line variables never reach the services a script starts.

The regression it guards: ``make demo DURATION=30`` exported DURATION=30 to the producer, which stopped
itself before the demo did ("a service exited early"). MAKEFLAGS is read as GNU make writes it: the
tests take it from a real make run, not from a string typed here.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from login_devtools import service_env


def makeflags_of(tmp_path: Path, *args: str) -> str:
    """MAKEFLAGS as a recipe of ``make <args>`` sees it."""
    makefile = tmp_path / "Makefile"
    makefile.write_text('show:\n\t@printf "%s" "$$MAKEFLAGS"\n')
    out = subprocess.run(
        ["make", "-s", "-f", str(makefile), "show", *args],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    return out.stdout


def test_names_the_variables_given_on_makes_command_line(tmp_path: Path) -> None:
    flags = makeflags_of(tmp_path, "DURATION=30", "KAFKA_PORT=19092", "NOTE=two words", "EMPTY=")
    assert sorted(service_env.make_command_line_variables(flags)) == [
        "DURATION",
        "EMPTY",
        "KAFKA_PORT",
        "NOTE",
    ]


def test_no_variables_outside_make_or_without_any(tmp_path: Path) -> None:
    assert service_env.make_command_line_variables("") == []
    assert service_env.make_command_line_variables(makeflags_of(tmp_path, "-k")) == []


def test_the_services_env_drops_them_and_sets_what_the_launcher_owns(tmp_path: Path) -> None:
    flags = makeflags_of(tmp_path, "DURATION=30", "LOG_LEVEL=DEBUG")
    base = {"PATH": "/usr/bin", "DURATION": "30", "LOG_LEVEL": "DEBUG", "SEED": "7", "COUNT": "5"}
    env = service_env.service_env({"COUNT": "0"}, base=base, makeflags=flags)
    assert "DURATION" not in env
    assert "LOG_LEVEL" not in env
    assert env["SEED"] == "7"  # from the environment make was started from: passed on
    assert env["COUNT"] == "0"  # the launcher's own
    assert env["PATH"] == "/usr/bin"


def test_the_note_names_held_back_service_settings_but_not_the_launchers_own(tmp_path: Path) -> None:
    flags = makeflags_of(tmp_path, "DURATION=30", "LOG_LEVEL=DEBUG", "KAFKA_PORT=19092")
    settings = service_env.service_setting_names()
    # the services' own settings models are read, not a copied list
    assert {"DURATION", "RATE", "COUNT", "LOG_LEVEL", "GROUP_ID", "BATCH_SIZE"} <= settings
    held = service_env.held_back(settings, {"DURATION": "0"}, makeflags=flags)
    assert held == ["LOG_LEVEL"]  # KAFKA_PORT is make's and the scripts', no service reads it
