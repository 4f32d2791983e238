"""The TOML front end: images that have no Dockerfile here (the operators' images: Strimzi's operator
and Kafka image, Prometheus, prometheus-operator, KEDA) described in a few lines and packed by the same
builder. ``tools/images/examples/`` holds worked examples; docs/images.md describes the format::

    [base]
    from = "scratch"                    # or "debian:<suite>" (debootstrap minbase, trimmed)
    packages = ["openjdk-17-jre-headless", "tini"]   # debian: --include
    build-packages = []                 # debian: only in the build root (for root = "build" layers)

    [[base.users]]                      # written into /etc/passwd and /etc/group
    name = "app"
    uid = 1001
    gid = 0                             # group name: "group", default the user's name

    [[layers]]
    name = "binary"
    root = "image"                      # or "build" (then only `capture` ships)
    capture = []

    [[layers.steps]]                    # one of copy / mkdir / run per step, in order
    copy = ["prometheus"]               # paths in the context (--context; default: the spec's folder)
    to = "/bin/prometheus"
    owner = "0:0"                       # numeric
    mode = "0755"                       # octal string

    [[layers.steps]]
    mkdir = "/prometheus"
    owner = "65534:65534"               # new directories (and this one) belong to it; default root

    [[layers.steps]]
    run = "ln -s /usr/lib/jvm/java-17-openjdk-amd64 /usr/lib/jvm/java"   # /bin/sh -c, as root
    workdir = "/"

    [config]
    user = "65534"
    entrypoint = ["/bin/prometheus"]
    cmd = ["--config.file=/etc/prometheus/prometheus.yml"]
    env = { PATH = "/usr/sbin:/usr/bin:/sbin:/bin" }
    workdir = "/prometheus"
    expose = ["9090"]                   # "/tcp" added when no protocol is given
    labels = { "org.opencontainers.image.title" = "prometheus" }

Unknown keys are refused (a typo is an error, not an ignored setting).
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from login_images.context import read_ignore
from login_images.dockerfile import DEBIAN_BASE, DEFAULT_PATH
from login_images.errors import SpecError
from login_images.spec import Base, Config, Copy, ImageSpec, Layer, MakeDir, Run, Step, User, parse_owner

TOP = {"base", "layers", "config"}
BASE = {"from", "packages", "build-packages", "users"}
USER = {"name", "uid", "gid", "group", "home", "shell"}
LAYER = {"name", "root", "capture", "steps"}
STEP = {"copy", "to", "owner", "mode", "mkdir", "run", "workdir", "user", "env"}
CONFIG = {"user", "entrypoint", "cmd", "env", "workdir", "expose", "labels", "stop-signal"}


def _check(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise SpecError(f"{where}: unknown key(s) {sorted(unknown)} (allowed: {sorted(allowed)})")


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise SpecError(f"{where}: expected a string or a list of strings, got {value!r}")


def _pairs(value: Any, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise SpecError(f"{where}: expected a table of strings")
    return tuple((str(k), str(v)) for k, v in value.items())


def _base(table: dict[str, Any], where: str) -> Base:
    _check(table, BASE, where)
    reference = table.get("from", "")
    users = []
    for number, user in enumerate(table.get("users", []), 1):
        _check(user, USER, f"{where}.users[{number}]")
        try:
            users.append(User(**user))
        except TypeError as exc:
            raise SpecError(f"{where}.users[{number}]: {exc}") from exc
    packages = _strings(table.get("packages", []), f"{where}.packages")
    build_packages = _strings(table.get("build-packages", []), f"{where}.build-packages")
    if reference == "scratch":
        if packages or build_packages:
            raise SpecError(f"{where}: a scratch base has no packages")
        return Base(kind="scratch", users=tuple(users), described_as="scratch")
    debian = DEBIAN_BASE.match(reference)
    if debian is None:
        raise SpecError(f'{where}.from: {reference!r}: expected "scratch" or "debian:<suite>"')
    return Base(
        kind="debian",
        suite=debian["suite"],
        packages=packages,
        build_packages=build_packages,
        env=(("PATH", DEFAULT_PATH),),
        users=tuple(users),
        described_as=reference,
    )


def _step(table: dict[str, Any], where: str) -> Step:
    _check(table, STEP, where)
    kinds = [k for k in ("copy", "mkdir", "run") if k in table]
    if len(kinds) != 1:
        raise SpecError(f"{where}: a step has exactly one of copy, mkdir, run (found {kinds})")
    if "copy" in table:
        if "to" not in table:
            raise SpecError(f"{where}: copy needs `to`")
        owner = parse_owner(table["owner"], where) if "owner" in table else None
        try:
            mode = int(table["mode"], 8) if "mode" in table else None
        except (TypeError, ValueError) as exc:
            raise SpecError(f"{where}: mode {table['mode']!r} is not an octal string") from exc
        return Copy(_strings(table["copy"], f"{where}.copy"), str(table["to"]), owner, mode)
    if "mkdir" in table:
        return MakeDir(str(table["mkdir"]), parse_owner(table["owner"], where) if "owner" in table else None)
    env = _pairs(table.get("env", {}), f"{where}.env")
    return Run(
        str(table["run"]),
        env or (("PATH", DEFAULT_PATH),),
        str(table.get("workdir", "/")),
        str(table.get("user", "")),
    )


def _config(table: dict[str, Any], base: Base, where: str) -> Config:
    _check(table, CONFIG, where)
    env = dict(base.env)
    env.update(_pairs(table.get("env", {}), f"{where}.env"))
    ports = tuple(p if "/" in p else f"{p}/tcp" for p in _strings(table.get("expose", []), f"{where}.expose"))
    return Config(
        user=str(table.get("user", "")),
        env=tuple(env.items()),
        workdir=str(table.get("workdir", "")),
        entrypoint=_strings(table["entrypoint"], f"{where}.entrypoint") if "entrypoint" in table else None,
        cmd=_strings(table["cmd"], f"{where}.cmd") if "cmd" in table else None,
        exposed_ports=ports,
        labels=_pairs(table.get("labels", {}), f"{where}.labels"),
        stop_signal=str(table.get("stop-signal", "")),
    )


def load(path: Path, context: Path | None = None) -> ImageSpec:
    """The image ``path`` describes; Copy sources are relative to ``context`` (default: its folder)."""
    try:
        document = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path}: {exc}") from exc
    _check(document, TOP, str(path))
    if "base" not in document:
        raise SpecError(f"{path}: no [base]")
    base = _base(document["base"], f"{path}: [base]")
    layers = []
    for number, table in enumerate(document.get("layers", []), 1):
        where = f"{path}: layers[{number}]"
        _check(table, LAYER, where)
        root = table.get("root", "image")
        if root not in ("image", "build"):
            raise SpecError(f"{where}.root: {root!r} is not image or build")
        kind: Literal["image", "build"] = "build" if root == "build" else "image"
        steps = tuple(_step(s, f"{where}.steps[{i}]") for i, s in enumerate(table.get("steps", []), 1))
        if not steps:
            raise SpecError(f"{where}: no steps")
        name = str(table.get("name", f"layer{number}"))
        described = "; ".join(_describe(s) for s in steps)
        layers.append(
            Layer(
                name,
                steps,
                kind,
                _strings(table.get("capture", []), f"{where}.capture"),
                chain="build" if kind == "build" else "",
                created_by=described,
            )
        )
    config = _config(document.get("config", {}), base, f"{path}: [config]")
    folder = (context or path.parent).resolve()
    return ImageSpec(
        base=base,
        layers=tuple(layers),
        config=config,
        context=folder,
        ignore=read_ignore(folder),
        source=str(path),
    )


def _describe(step: Step) -> str:
    if isinstance(step, Copy):
        return f"COPY {' '.join(step.sources)} {step.dest}"
    if isinstance(step, MakeDir):
        return f"MKDIR {step.path}"
    return f"RUN {step.command}"
