"""The registry of tested README commands: a test declares the commands it runs with ``@runs(...)``.

test_registry.py compares it with the commands README.md shows (tests/readme/readme.py): a command shown
without a test fails the tier, and so does a registered command the README no longer shows. The registry is
filled by importing every ``tests/readme/test_*.py`` module, so a command cannot be registered without the
test that runs it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

F = TypeVar("F", bound=Callable[..., object])
TESTED: dict[str, str] = {}  # command as the README shows it -> "module::test" that runs it


def runs(*commands: str) -> Callable[[F], F]:
    """Register ``commands`` (exactly as README.md shows them) as run by the decorated test."""

    def register(test: F) -> F:
        where = f"{test.__module__}::{getattr(test, '__name__', '?')}"
        for command in commands:
            known = TESTED.setdefault(command, where)
            if known != where:
                raise AssertionError(f"{command!r} is registered by two tests: {known} and {where}")
        return test

    return register


def tested() -> dict[str, str]:
    """Every registered command, after importing each test module of the tier."""
    for path in sorted(Path(__file__).parent.glob("test_*.py")):
        importlib.import_module(f"{__package__}.{path.stem}")
    return dict(TESTED)
