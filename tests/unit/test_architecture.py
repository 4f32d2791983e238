"""docs/architecture.md stays true, and the consumer stays a house a newcomer can live in.

Every file, folder and name the page cites in its tables exists (a name is looked up in the files of its
row: a top-level class, function or constant, or ``Class.attribute``); no module of the consumer is longer
than 350 lines and no class longer than 200, nor any class of the other services (``services/``).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from login_common.settings import env_name
from login_consumer.config import ConsumerSettings

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "services"
PACKAGE = SERVICES / "consumer" / "src" / "login_consumer"
DOC = ROOT / "docs" / "architecture.md"
MAX_FILE_LINES = 350
MAX_CLASS_LINES = 200
SPAN = re.compile(r"`([^`]+)`")
IDENTIFIER = re.compile(r"^[A-Za-z_]\w*(\.\w+)?$")
ENV_NAMES = {env_name(ConsumerSettings, field) for field in ConsumerSettings.model_fields}


def _resolve(cited: str) -> Path | None:
    for base in (PACKAGE, ROOT):
        path = base / cited
        if path.exists():
            return path
    return None


def _defined(paths: list[Path]) -> dict[str, set[str]]:
    """Top-level names of these modules (or of every module under these folders) -> their attributes."""
    names: dict[str, set[str]] = {}
    files = [f for p in paths for f in ([p] if p.is_file() else sorted(p.rglob("*.py"))) if f.suffix == ".py"]
    for file in files:
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.ClassDef):
                attrs = {
                    getattr(item, "name", None) or getattr(getattr(item, "target", None), "id", "")
                    for item in node.body
                }
                names.setdefault(node.name, set()).update(attrs)
            elif isinstance(node, ast.FunctionDef):
                names.setdefault(node.name, set())
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        names.setdefault(target.id, set())
    return names


def _rows() -> list[list[str]]:
    return [SPAN.findall(line) for line in DOC.read_text().splitlines() if line.startswith("|")]


def test_every_cited_path_exists() -> None:
    cited = [s for row in _rows() for s in row if s.endswith((".py", "/", ".yaml", ".json", ".toml"))]
    assert len(cited) > 20
    missing = [s for s in cited if _resolve(s) is None]
    assert not missing, f"docs/architecture.md cites what does not exist: {missing}"


def test_every_cited_name_is_defined_where_its_row_says() -> None:
    checked = 0
    wrong: list[str] = []
    for row in _rows():
        paths = [p for s in row if s.endswith((".py", "/")) and (p := _resolve(s)) is not None]
        if not paths:
            continue
        defined = _defined(paths)
        for span in row:
            if not IDENTIFIER.match(span) or span.endswith(".py") or span in ENV_NAMES:
                continue
            owner, _, attribute = span.partition(".")
            checked += 1
            if owner not in defined or (attribute and attribute not in defined[owner]):
                wrong.append(f"{span} (row citing {[str(p.relative_to(ROOT)) for p in paths]})")
    assert checked > 30
    assert not wrong, f"docs/architecture.md names what its files do not define: {wrong}"


def test_the_pictures_exist_and_are_svg() -> None:
    text = DOC.read_text()
    for image in re.findall(r"\]\((img/[^)]+)\)", text):
        path = DOC.parent / image
        assert path.exists(), image
        assert path.read_text().lstrip().startswith("<svg"), image


def test_no_consumer_file_or_class_a_newcomer_must_read_whole() -> None:
    too_long: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        name = str(path.relative_to(PACKAGE))
        if text.count("\n") > MAX_FILE_LINES:
            too_long.append(f"{name}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{name}: class {node.name} {size} lines")
    assert not too_long, too_long


def test_no_class_of_any_service_a_newcomer_must_read_whole() -> None:
    too_long: list[str] = []
    for path in sorted(SERVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and node.end_lineno is not None:
                size = node.end_lineno - node.lineno + 1
                if size > MAX_CLASS_LINES:
                    too_long.append(f"{path.relative_to(SERVICES)}: class {node.name} {size} lines")
    assert not too_long, too_long
