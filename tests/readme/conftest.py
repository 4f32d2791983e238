"""The README tier: every command README.md shows, run as a user runs it, and what the README promises.

Each command runs through ``bash -c "<command as shown>"`` from the repository root, in the environment
this session was started from minus what an enclosing make put there (MAKEFLAGS, MAKELEVEL, ...: a user's
shell has none) and KAFKA_BOOTSTRAP (the other tiers' setting). KAFKA_PORT stays, so the commands use this
checkout's broker port. Commands the README says to stop with Ctrl-C get SIGINT on their process group, as
a terminal sends it.

The commands run from the real checkout: `make run`, `make stop` and `make clean` act on its .cache/run,
so the tier refuses to start while a `make run` pipeline of the user's is running. The broker on
KAFKA_PORT is stopped and started by the kafka-up/-down tests and is running again when the tier ends.

The commands too slow for ``make test`` (``make evaluate``, ``make bench`` and its quick run, ``make
bench-producer``: tests/readme/test_long.py says why) run only with README_LONG=1 (``make
test-readme-long``, run by hand: CI has no time); they are registered and tested all the same.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
# What an enclosing make (make test) exports to its recipes; a user's shell has none of it.
FROM_MAKE = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")
LONG = os.environ.get("README_LONG", "") not in ("", "0")


def kafka_port() -> int:
    return int(os.environ.get("KAFKA_PORT", "9092"))


def user_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in FROM_MAKE and k != "KAFKA_BOOTSTRAP"}
    if env.get("BOOTSTRAP_SERVERS") == f"127.0.0.1:{kafka_port()}":
        del env["BOOTSTRAP_SERVERS"]  # the Makefile's own default, exported by an enclosing make
    env.update(extra)
    return env


@dataclass
class Ran:
    command: str
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def out(self) -> str:
        return self.stdout + self.stderr

    def tail(self, chars: int = 3000) -> str:
        out, err = self.stdout[-chars:], self.stderr[-chars:]
        return f"`{self.command}` exit {self.returncode}:\n{out}\n--- stderr:\n{err}"


def run(command: str, *, timeout: float = 300, env: dict[str, str] | None = None) -> Ran:
    """``command`` exactly as the README shows it, from the repository root; its process group is killed
    if it outlives ``timeout``."""
    started = time.monotonic()
    proc = subprocess.Popen(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env or user_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc.pid)
        out, err = proc.communicate()
        pytest.fail(f"`{command}` still ran after {timeout:.0f}s:\n{out[-2000:]}\n{err[-2000:]}")
    except BaseException:  # the test's own timeout, Ctrl-C: nothing it started outlives it
        kill_group(proc.pid)
        raise
    return Ran(command, proc.returncode, out, err, time.monotonic() - started)


def kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


class Interactive:
    """A command the README stops with Ctrl-C: started in its own process group, output to a file."""

    def __init__(self, command: str, env: dict[str, str] | None = None) -> None:
        self.command = command
        self._file = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["bash", "-c", command],
            cwd=ROOT,
            env=env or user_env(),
            stdout=self._file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )

    def output(self) -> str:
        self._file.flush()
        self._file.seek(0)
        return self._file.read()

    def wait_for(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output()
            if text in out:
                return out
            if self.proc.poll() is not None:
                pytest.fail(
                    f"`{self.command}` exited {self.proc.returncode} before printing {text!r}:\n{out[-3000:]}"
                )
            time.sleep(0.5)
        pytest.fail(f"`{self.command}` printed no {text!r} within {timeout:.0f}s:\n{self.output()[-3000:]}")

    def ctrl_c(self, timeout: float = 90) -> Ran:
        """SIGINT to the process group, as a terminal's Ctrl-C; then its output."""
        os.killpg(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid)
            self.proc.wait()
            pytest.fail(
                f"`{self.command}` did not stop within {timeout:.0f}s of Ctrl-C:\n{self.output()[-3000:]}"
            )
        # make returns as soon as it has passed SIGINT on; the command it ran may still be printing its last
        # words (the live view prints its final frame on Ctrl-C): wait for the whole group, as a terminal does
        deadline = time.monotonic() + timeout
        while group_alive(self.proc.pid):
            if time.monotonic() > deadline:
                kill_group(self.proc.pid)
                pytest.fail(f"`{self.command}`'s processes outlived make by {timeout:.0f}s after Ctrl-C")
            time.sleep(0.1)
        out = self.output()
        self._file.close()
        return Ran(self.command, self.proc.returncode, out, "", time.monotonic() - self.started)

    def kill(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc.pid)
            self.proc.wait()


def group_alive(pgid: int) -> bool:
    """A process of group ``pgid`` still runs (zombies do not count)."""
    ps = subprocess.run(["ps", "-e", "-o", "pgid=,stat="], capture_output=True, text=True, check=False)
    rows = (line.split() for line in ps.stdout.splitlines())
    return any(row[0] == str(pgid) and row[1][:1] != "Z" for row in rows if len(row) == 2)


def alive(pid: int) -> bool:
    ps = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return ps.stdout.strip()[:1] not in ("", "Z")


def running_as(pid: int, name: str) -> bool:
    """``pid`` runs and its command line names ``name`` (a recorded pid may have been reused since)."""
    ps = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False)
    return alive(pid) and name in ps.stdout


def recorded_pipeline(folder: str) -> dict[str, Any] | None:
    """.cache/<folder>/pipeline.json (``make run``: run, ``make demo``: demo), or None."""
    try:
        state = json.loads((ROOT / ".cache" / folder / "pipeline.json").read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def recorded_procs(folder: str) -> list[dict[str, Any]]:
    """The processes the pipeline record lists (name, pid, port, log); [] without a record."""
    state = recorded_pipeline(folder) or {}
    return [p for p in state.get("procs", []) if isinstance(p, dict)]


def running_pids(folder: str) -> list[int]:
    return [int(p["pid"]) for p in recorded_procs(folder) if running_as(int(p["pid"]), str(p["name"]))]


@pytest.fixture(scope="session")
def readme_tier() -> Iterator[None]:
    """Refuse to run over a user's `make run` pipeline; leave the broker on KAFKA_PORT running. Every
    module that runs commands uses it (``pytestmark``)."""
    pids = running_pids("run")
    if pids:
        pytest.fail(
            f"a `make run` pipeline runs from {ROOT} (pids {pids}): the README tier runs make run/stop/clean "
            "there itself. `make stop` first."
        )
    yield
    up = run("make kafka-up", timeout=300)
    assert up.returncode == 0, up.tail()


def only_long() -> pytest.MarkDecorator:
    """For the commands too slow for `make test`: they run with README_LONG=1 (make test-readme-long)."""
    return pytest.mark.skipif(
        not LONG, reason="too slow for make test: runs in `make test-readme-long` (by hand: CI has no time)"
    )
