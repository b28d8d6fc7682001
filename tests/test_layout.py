"""The package's layout keeps its own rules (design.md, "Parts and their rooms"): who may import whom, how many
loose modules sit at the top, and how long a module may grow. Read from the source with ``ast``, so a lazy
import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import metadj_bridge

PACKAGE = Path(metadj_bridge.__file__).parent
#: The ground floor: the vocabulary every room shares.
GROUND_FLOOR = {"errors", "signals", "parameters", "lifecycle"}
#: room -> rooms it must never import.
NEVER = {
    "mapping": {"inputs", "scope"},
    "inputs": {"mapping", "scope"},
    "profile": {"scope", "mapping"},
    "scope": {"inputs", "mapping"},
    "video": {"inputs"},
    "emulator": {"run", "status", "showlog", "doctor", "soundcheck", "inputs", "mapping", "scope", "video", "outputs"},
}
MAX_LINES = 450


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _room(path: Path) -> str:
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def _imported_rooms(path: Path) -> set[str]:
    """The project's rooms (or ground-floor modules) that ``path`` imports, lazily or not."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(package[: len(package) - node.level + 1])
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.append(module)
            if module == "metadj_bridge":  # from metadj_bridge import parameters
                names += [f"metadj_bridge.{alias.name}" for alias in node.names]
    rooms = set()
    for name in names:
        parts = name.split(".")
        if parts[0] == "metadj_bridge" and len(parts) > 1:
            rooms.add(parts[1])
    return rooms


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_room_imports_what_it_must_not(path: Path) -> None:
    room = _room(path)
    imported = _imported_rooms(path)
    if room in GROUND_FLOOR:
        assert imported <= GROUND_FLOOR, f"the ground floor imports {sorted(imported - GROUND_FLOOR)}"
    forbidden = imported & NEVER.get(room, set())
    assert not forbidden, f"{room}/ imports {sorted(forbidden)}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_is_longer_than_the_limit(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{lines} lines"


def test_at_most_six_loose_modules_at_the_top() -> None:
    loose = sorted(p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__")
    assert loose == sorted({"cli", "__main__"} | GROUND_FLOOR)
    assert len(loose) <= 6


def test_every_room_says_what_it_holds_and_may_import() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        assert len(doc) > 80 and "import" in doc.lower(), f"{init.parent.name}/__init__.py needs a docstring saying so"
