"""The Dockerfile front end: the subset of the Dockerfile language the services' Dockerfile uses,
translated into an :class:`~login_images.spec.ImageSpec`, so that the builder builds "what the
Dockerfile says" and a change to the Dockerfile is a change to the daemon-free images too.

Instructions: ``ARG`` (global and per stage; ``--build-arg`` values), ``FROM <base|stage> [AS name]``,
``ENV``, ``RUN`` (shell or JSON form), ``COPY`` (``--from=<stage>``, ``--chown=<uid>:<gid>``,
``--chmod=<octal>``), ``WORKDIR``, ``USER``, ``EXPOSE``, ``ENTRYPOINT``, ``CMD``, ``LABEL``,
``STOPSIGNAL``. Anything else (``ADD``, ``VOLUME``, ``HEALTHCHECK``, ``SHELL``, ``ONBUILD``, heredocs,
wildcard sources) is refused by name rather than half-built. Variables: ``$NAME``, ``${NAME}``,
``${NAME:-word}``, ``${NAME:+word}`` in FROM, COPY, ENV, WORKDIR, USER, EXPOSE, LABEL, STOPSIGNAL, as Docker
expands them; RUN commands get the stage's ENV and ARGs in their environment and expand them in the shell.

Bases (no registry here): ``python:X.Y-slim-<suite>`` becomes Debian ``<suite>`` with ``python3`` (which must
be X.Y: checked after debootstrap), ``python-is-python3``, ``ca-certificates``, ``netbase`` and ``tzdata``
(what the official slim image adds to Debian), and ``python3-pip`` in the build root (the official
image's global pip); ``debian:<suite>[-slim]`` becomes that suite; ``scratch`` stays empty. The official
image's own ENV (``PYTHON_VERSION``, ``GPG_KEY``, a ``PATH`` with ``/usr/local/bin`` first) is not
reproduced: Python lives in /usr/bin here; ``LANG=C.UTF-8`` is.

Layers, from the target's chain of stages:

* ``RUN``/``COPY``/``WORKDIR`` of the target's own stages build image layers: a layer runs its copies,
  then its commands, in one chroot; a ``COPY`` after a ``RUN`` starts the next layer once the current one
  has copied something (so ``RUN python -m venv`` before any COPY joins the first layer that has inputs).
* ``COPY --from=<stage> <path> <path>`` ships the layers of that build stage, grouped by the same rule
  and built in the build root, each reduced to ``<path>``: the services' build stage gives a dependency
  layer (requirements in, ``pip install -r``) and a code layer (sources in, ``pip install --no-deps``), so
  a code change rebuilds only the last. Source and destination must be the same path.
"""

from __future__ import annotations

import json
import posixpath
import re
import shlex
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from login_images.context import read_ignore
from login_images.errors import SpecError
from login_images.spec import (
    Base,
    Config,
    Copy,
    ImageSpec,
    Layer,
    MakeDir,
    Pairs,
    Run,
    Step,
    parse_owner,
)

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PYTHON_BASE = re.compile(r"^python:(?P<version>\d+\.\d+)(?:\.\d+)?-slim-(?P<suite>[a-z]+)$")
DEBIAN_BASE = re.compile(r"^debian:(?P<suite>[a-z]+)(?:-slim)?$")
PYTHON_PACKAGES = ("python3", "python-is-python3", "ca-certificates", "netbase", "tzdata")
SUPPORTED = {
    "ARG",
    "FROM",
    "ENV",
    "RUN",
    "COPY",
    "WORKDIR",
    "USER",
    "EXPOSE",
    "ENTRYPOINT",
    "CMD",
    "LABEL",
    "STOPSIGNAL",
}
VARIABLE = re.compile(r"\\\$|\$(?:\{(?P<braced>\w+)(?::(?P<op>[-+])(?P<word>[^}]*))?\}|(?P<bare>\w+))")


@dataclass(frozen=True)
class Instruction:
    op: str
    text: str
    line: int


@dataclass
class Stage:
    name: str
    base: str
    line: int
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    global_args: list[tuple[str, str | None]]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise SpecError(f"{self.path}: no stage named {name!r} (stages: {[s.name for s in self.stages]})")


def parse(path: Path) -> Dockerfile:
    """Instructions per stage, continuation lines joined, comments dropped."""
    lines: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append((start, pending + stripped))
        pending = ""
    if pending:
        raise SpecError(f"{path}:{start}: a continuation line ends the file")
    global_args: list[tuple[str, str | None]] = []
    stages: list[Stage] = []
    for number, line in lines:
        op, _, text = line.partition(" ")
        op, text = op.upper(), text.strip()
        where = f"{path}:{number}"
        if op not in SUPPORTED:
            raise SpecError(f"{where}: {op} is not supported by the daemon-free builder")
        if "<<" in text and op in ("RUN", "COPY"):
            raise SpecError(f"{where}: heredocs are not supported by the daemon-free builder")
        if op == "FROM":
            words = text.split()
            if len(words) == 3 and words[1].upper() == "AS":
                name = words[2]
            elif len(words) == 1:
                name = str(len(stages))
            else:
                raise SpecError(f"{where}: FROM {text}: expected FROM <image> [AS <name>]")
            stages.append(Stage(name, words[0], number))
        elif not stages:
            if op != "ARG":
                raise SpecError(f"{where}: {op} before the first FROM")
            key, eq, value = text.partition("=")
            global_args.append((key.strip(), value if eq else None))
        else:
            stages[-1].instructions.append(Instruction(op, text, number))
    if not stages:
        raise SpecError(f"{path}: no FROM")
    return Dockerfile(path, global_args, stages)


def expand(text: str, variables: dict[str, str]) -> str:
    """Docker's variable substitution; an unset variable is empty."""

    def one(match: re.Match[str]) -> str:
        if match[0] == "\\$":
            return "$"
        name = match["braced"] or match["bare"]
        value = variables.get(name)
        if match["op"] == "-":
            return value if value else match["word"]
        if match["op"] == "+":
            return match["word"] if value else ""
        return value or ""

    return VARIABLE.sub(one, text)


def _words(text: str, where: str) -> list[str]:
    try:
        return shlex.split(text, posix=True)
    except ValueError as exc:
        raise SpecError(f"{where}: {exc}") from exc


def _json_or_shell(text: str) -> tuple[tuple[str, ...], bool]:
    """(argv, is exec form) of RUN/ENTRYPOINT/CMD."""
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value), True
    return ("/bin/sh", "-c", text), False


@dataclass
class _State:
    """What the stages of a chain accumulate as the translation walks them."""

    base: Base
    env: dict[str, str]
    args: dict[str, str] = field(default_factory=dict)
    workdir: str = ""  # "" until a WORKDIR: the config then has none, and steps run in /
    user: str = ""
    config: Config = field(default_factory=Config)

    def variables(self) -> dict[str, str]:
        return {**self.args, **self.env}


def _resolve_base(reference: str, where: str) -> Base:
    python = PYTHON_BASE.match(reference)
    if python:
        return Base(
            kind="debian",
            suite=python["suite"],
            packages=PYTHON_PACKAGES,
            build_packages=("python3-pip",),
            python=python["version"],
            env=(("PATH", DEFAULT_PATH), ("LANG", "C.UTF-8")),
            described_as=reference,
        )
    debian = DEBIAN_BASE.match(reference)
    if debian:
        return Base(
            kind="debian", suite=debian["suite"], env=(("PATH", DEFAULT_PATH),), described_as=reference
        )
    if reference == "scratch":
        return Base(kind="scratch", described_as="scratch")
    raise SpecError(
        f"{where}: FROM {reference}: no daemon-free counterpart "
        "(supported: python:X.Y-slim-<suite>, debian:<suite>[-slim], scratch)"
    )


class _Layers:
    """The layers of one chain as the translation walks it: the open one and those done."""

    def __init__(self, root: Literal["image", "build"], chain: str) -> None:
        self.root = root
        self.chain = chain
        self.done: list[Layer] = []
        self.steps: list[Step] = []
        self.described: list[str] = []
        self.stage = ""  # the stage the open layer started in: it names the layer
        self.per_stage: dict[str, int] = {}

    def opening(self, stage: str) -> None:
        if not self.steps:
            self.stage = stage

    def add(self, step: Step, description: str) -> None:
        self.steps.append(step)
        self.described.append(description)

    def runs_after_a_copy(self) -> bool:
        """Has the open layer copied something in and then run a command? (Then a COPY starts the next.)"""
        copies = [i for i, step in enumerate(self.steps) if isinstance(step, Copy)]
        return bool(copies) and any(isinstance(step, Run) for step in self.steps[copies[0] :])

    def close(self) -> None:
        if not self.steps:
            return
        self.per_stage[self.stage] = self.per_stage.get(self.stage, 0) + 1
        self.done.append(
            Layer(
                name=f"{self.stage}.{self.per_stage[self.stage]}",
                steps=tuple(self.steps),
                root=self.root,
                chain=self.chain,
                created_by=" && ".join(self.described),
            )
        )
        self.steps = []
        self.described = []


class _Translator:
    def __init__(self, dockerfile: Dockerfile, build_args: dict[str, str], context: Path) -> None:
        self.file = dockerfile
        self.build_args = build_args
        self.context = context
        self.globals: dict[str, str] = {}
        for key, default in dockerfile.global_args:
            value = build_args.get(key, default)
            if value is not None:
                self.globals[key] = expand(value, self.globals)
        self.used_args: set[str] = set(self.globals)

    def chain(self, name: str) -> list[Stage]:
        """The stages from the one FROM a real base down to ``name``."""
        out: list[Stage] = []
        stage = self.file.stage(name)
        while True:
            out.insert(0, stage)
            base = expand(stage.base, self.globals)
            if any(s.name == base for s in self.file.stages[: self.file.stages.index(stage)]):
                stage = self.file.stage(base)
                continue
            return out

    def where(self, number: int) -> str:
        return f"{self.file.path}:{number}"

    def walk(self, name: str, root: Literal["image", "build"]) -> tuple[_State, list[Layer]]:
        """Translate the chain ending at stage ``name``: its state and its layers (``root`` says where
        their steps run: the image, or a build root)."""
        stages = self.chain(name)
        first = stages[0]
        base = _resolve_base(expand(first.base, self.globals), self.where(first.line))
        state = _State(base=base, env=dict(base.env))
        layers = _Layers(root, chain=name if root == "build" else "")
        for stage in stages:
            state.args = {}
            for ins in stage.instructions:
                if ins.op == "COPY" and layers.runs_after_a_copy():
                    layers.close()
                layers.opening(stage.name)
                self._instruction(ins, self.where(ins.line), state, layers)
        layers.close()
        return state, layers.done

    def _instruction(self, ins: Instruction, where: str, state: _State, layers: _Layers) -> None:
        op, text = ins.op, ins.text
        variables = state.variables()
        if op == "ARG":
            key, eq, default = text.partition("=")
            key = key.strip()
            value = self.build_args.get(key, expand(default, variables) if eq else self.globals.get(key))
            if value is not None:
                state.args[key] = value
            self.used_args.add(key)
        elif op == "ENV":
            for key, value in self._pairs(text, where, variables):
                state.env[key] = value
                variables = state.variables()
        elif op == "LABEL":
            labels = dict(state.config.labels)
            labels.update(self._pairs(text, where, variables))
            state.config = replace(state.config, labels=tuple(labels.items()))
        elif op == "WORKDIR":
            path = posixpath.normpath(posixpath.join(state.workdir or "/", expand(text, variables)))
            state.workdir = path
            layers.add(MakeDir(path), f"WORKDIR {path}")
        elif op == "USER":
            state.user = expand(text, variables)
        elif op == "EXPOSE":
            ports = list(state.config.exposed_ports)
            for word in _words(expand(text, variables), where):
                port = word if "/" in word else f"{word}/tcp"
                if port not in ports:
                    ports.append(port)
            state.config = replace(state.config, exposed_ports=tuple(ports))
        elif op == "ENTRYPOINT":
            argv, _ = _json_or_shell(text)
            state.config = replace(state.config, entrypoint=argv, cmd=None)
        elif op == "CMD":
            argv, _ = _json_or_shell(text)
            state.config = replace(state.config, cmd=argv)
        elif op == "STOPSIGNAL":
            state.config = replace(state.config, stop_signal=expand(text, variables))
        elif op == "RUN":
            argv, exec_form = _json_or_shell(text)
            env = tuple(state.variables().items())
            command = json.dumps(list(argv)) if exec_form else text
            layers.add(
                Run(command, env, state.workdir or "/", state.user, shell=not exec_form), f"RUN {text}"
            )
        elif op == "COPY":
            self._copy(text, where, state, layers)

    def _pairs(self, text: str, where: str, variables: dict[str, str]) -> list[tuple[str, str]]:
        words = _words(text, where)
        if words and "=" not in words[0]:  # legacy ENV key value
            return [(words[0], expand(text.split(None, 1)[1] if len(words) > 1 else "", variables))]
        out = []
        for word in words:
            key, eq, value = word.partition("=")
            if not eq:
                raise SpecError(f"{where}: {word!r} is not key=value")
            out.append((key, expand(value, variables)))
            variables = {**variables, key: out[-1][1]}
        return out

    def _copy(self, text: str, where: str, state: _State, layers: _Layers) -> None:
        words = [expand(w, state.variables()) for w in _words(text, where)]
        flags = {}
        while words and words[0].startswith("--"):
            key, _, value = words.pop(0)[2:].partition("=")
            flags[key] = value
        unknown = set(flags) - {"from", "chown", "chmod", "link"}
        if unknown:
            raise SpecError(f"{where}: COPY --{sorted(unknown)[0]} is not supported")
        if len(words) < 2:
            raise SpecError(f"{where}: COPY needs a source and a destination")
        *sources, dest = words
        if any(ch in s for s in sources for ch in "*?["):
            raise SpecError(f"{where}: COPY with wildcards is not supported by the daemon-free builder")
        if "from" in flags:
            layers.close()
            layers.done.extend(self._copy_from(flags["from"], sources, dest, where, state))
            return
        if not dest.startswith("/"):
            dest = posixpath.join(state.workdir or "/", dest) + ("/" if dest.endswith("/") else "")
        owner = parse_owner(flags["chown"], where) if flags.get("chown") else None
        mode = int(flags["chmod"], 8) if flags.get("chmod") else None
        layers.add(Copy(tuple(sources), dest, owner, mode), f"COPY {text}")

    def _copy_from(
        self, stage_name: str, sources: list[str], dest: str, where: str, state: _State
    ) -> list[Layer]:
        if len(sources) != 1 or posixpath.normpath(sources[0]) != posixpath.normpath(dest):
            raise SpecError(
                f"{where}: COPY --from needs one source copied to the same path (got {sources} {dest})"
            )
        build_state, build_layers = self.walk(stage_name, root="build")
        if build_state.base.suite != state.base.suite or build_state.base.kind != state.base.kind:
            raise SpecError(
                f"{where}: stage {stage_name} is based on {build_state.base.described_as}, the image on "
                f"{state.base.described_as}: the build root must be the image's Debian suite"
            )
        if build_state.base.build_packages and not state.base.build_packages:
            state.base = replace(state.base, build_packages=build_state.base.build_packages)
        path = posixpath.normpath(dest)
        return [replace(layer, capture=(path,)) for layer in build_layers]


def translate(path: Path, target: str, build_args: dict[str, str], context: Path) -> ImageSpec:
    """The image ``docker build -f path --target target --build-arg ... context`` would build."""
    dockerfile = parse(path)
    translator = _Translator(dockerfile, build_args, context)
    state, layers = translator.walk(target, root="image")
    unused = set(build_args) - translator.used_args
    if unused:
        raise SpecError(f"{path}: build argument(s) {sorted(unused)} are declared by no ARG")
    env: Pairs = tuple(state.env.items())
    config = replace(state.config, user=state.user, env=env, workdir=state.workdir)
    return ImageSpec(
        base=state.base,
        layers=tuple(layers),
        config=config,
        context=context,
        ignore=read_ignore(context),
        source=f"{path} (target {target})",
        annotations=(("org.opencontainers.image.base.name", state.base.described_as),),
    )
