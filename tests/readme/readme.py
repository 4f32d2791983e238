"""Read the commands README.md shows, with the section and line each is shown in.

A command is, in a fenced ``bash``/``sh``/``shell`` block, every line that is not blank or a comment
(a trailing ``# comment`` is dropped); outside code blocks (prose and tables), every inline code span
whose first word, after any ``NAME=value`` assignments, is ``make``, one of the services' command-line
programs (``login-producer``, ``login-consumer``) followed by arguments, or a path inside the repository
followed by arguments (``.venv/bin/login-live-view …``; a bare path names a file). Spans that name an
operation rather than show a command (``go install``, ``helm test``, ``tilt up``) are not commands.
Whitespace inside a command is collapsed, so a span broken across lines reads as one command.

Sections are the ``## `` headings; what comes before the first is the ``intro``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
INTRO = "intro"
SHELL_LANGS = {"bash", "sh", "shell", "console"}
PROGRAMS = {"login-producer", "login-consumer"}
ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=\S*$")
SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")


@dataclass(frozen=True)
class Shown:
    """A command as the README shows it."""

    command: str
    section: str
    line: int
    where: str  # "block" or "prose"


def words(command: str) -> list[str]:
    return command.split()


def program_words(command: str) -> list[str]:
    """The words after the leading ``NAME=value`` assignments."""
    parts = words(command)
    while parts and ASSIGNMENT.match(parts[0]):
        parts = parts[1:]
    return parts


def is_command(text: str) -> bool:
    parts = program_words(text)
    if not parts:
        return False
    first = parts[0]
    if first == "make":
        return True
    if first in PROGRAMS:
        return len(parts) > 1
    if "/" in first and not first.startswith(("/", "http")) and len(parts) > 1:
        return (ROOT / first).exists() or first.startswith(".venv/")
    return False


def make_targets(command: str) -> list[str]:
    """The targets a ``make`` command names (its words that are neither options nor assignments)."""
    parts = program_words(command)
    if not parts or parts[0] != "make":
        return []
    return [w for w in parts[1:] if not w.startswith("-") and "=" not in w]


def make_variables(command: str) -> dict[str, str]:
    """The ``NAME=value`` words given to make after ``make``."""
    parts = program_words(command)
    if not parts or parts[0] != "make":
        return {}
    return dict(w.split("=", 1) for w in parts[1:] if ASSIGNMENT.match(w))


def _strip_comment(line: str) -> str:
    return re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()


def shown(text: str | None = None) -> list[Shown]:
    """Every command the README shows, in order (the same command may be shown more than once)."""
    text = README.read_text() if text is None else text
    found: list[Shown] = []
    section = INTRO
    in_block = False
    shell_block = False
    prose: list[tuple[int, str]] = []  # (line number, text) outside code blocks

    for number, line in enumerate(text.splitlines(), start=1):
        fence = line.strip().startswith("```")
        if fence:
            if not in_block:
                in_block = True
                shell_block = line.strip()[3:].strip().lower() in SHELL_LANGS
            else:
                in_block = False
            prose.append((number, ""))
            continue
        if in_block:
            command = " ".join(_strip_comment(line).split())
            if shell_block and command:
                found.append(Shown(command, section, number, "block"))
            continue
        if line.startswith("## "):
            section = line[3:].strip()
        prose.append((number, line))

    # Inline spans may wrap across lines: scan the prose as one text, mapping offsets back to lines.
    starts: list[tuple[int, int, str]] = []  # (offset, line number, section)
    section = INTRO
    joined = ""
    for number, line in prose:
        if line.startswith("## "):
            section = line[3:].strip()
        starts.append((len(joined), number, section))
        joined += line + "\n"
    for match in SPAN.finditer(joined):
        command = " ".join(match.group(1).split())
        if not is_command(command):
            continue
        _offset, number, sect = max((s for s in starts if s[0] <= match.start()), key=lambda s: s[0])
        found.append(Shown(command, sect, number, "prose"))
    found.sort(key=lambda s: s.line)
    return found


def commands(text: str | None = None) -> dict[str, list[Shown]]:
    """Each distinct command and where it is shown."""
    out: dict[str, list[Shown]] = {}
    for item in shown(text):
        out.setdefault(item.command, []).append(item)
    return out


def sections(text: str | None = None) -> list[str]:
    """The ``## `` headings, in order."""
    text = README.read_text() if text is None else text
    heads = []
    in_block = False
    for line in text.splitlines():
        if line.strip().startswith("```"):
            in_block = not in_block
        elif not in_block and line.startswith("## "):
            heads.append(line[3:].strip())
    return heads
