"""The package's import edges go one way: no module imports from a higher room.

Every module under ``openmtcnn/`` is parsed (not imported), and every ``import openmtcnn...`` /
``from openmtcnn... import`` in it, at any depth (function-local ones too), becomes an edge
between rooms. ``benchmarks/import_graph.py`` prints the same edges as counts.
"""
from __future__ import annotations

import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "openmtcnn"

# The room order, lowest first. A module may import only from its own level or lower ones;
# rooms on one level (the base utilities, the job rooms) are peers.
LAYERS = [
    ("fileio", "progress", "geometry"),  # base utilities
    ("models",),
    ("weights",),
    ("runtime",),
    ("detect", "__init__"),  # __init__: openmtcnn/__init__.py, the public face over detect and weights
    ("data",),
    ("train",),
    ("evaluate",),
    ("compress",),
    ("export",),
    ("anonymise", "batch", "serve"),  # job rooms
    ("cli",),
]
LEVEL = {room: level for level, rooms in enumerate(LAYERS) for room in rooms}
# The edges up the order that are meant: the package's face re-exports one function of a job room.
ALLOWED_UP = {("__init__", "openmtcnn.anonymise")}  # callable as anonymise(); its __init__ imports only NumPy/OpenCV


def room_of(module: str) -> str:
    """Room of a dotted module name inside the package: its first part below ``openmtcnn``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def module_name(path: Path) -> str:
    """Dotted name of a source file under the package folder."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def is_module(name: str) -> bool:
    """Whether a dotted name is a module or package in the source tree (not a name inside one)."""
    path = PACKAGE.parent.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every package module a file imports, anywhere in it.

    ``from openmtcnn import weights`` names the submodule ``openmtcnn.weights``; ``from openmtcnn
    import MTCNN`` names the package itself. Relative imports are resolved against the file.
    """
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.append((node.lineno, sub if is_module(sub) else base))
    return sorted({(line, mod) for line, mod in found if mod == "openmtcnn" or mod.startswith("openmtcnn.")})


def import_edges() -> list[tuple[str, int, str, str, str]]:
    """Every package-internal import as ``(file, line, from room, to room, imported module)``."""
    edges = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = str(path.relative_to(PACKAGE.parent))
        here = room_of(module_name(path))
        for line, target in imported_modules(path):
            edges.append((rel, line, here, room_of(target), target))
    return edges


def upward(edges) -> list[tuple[str, int, str, str, str]]:
    """The edges that go to a higher level than their importer's (or touch an unplaced room)."""
    return [e for e in edges if (e[2] not in LEVEL or e[3] not in LEVEL or LEVEL[e[3]] > LEVEL[e[2]])
            and (e[2], e[4]) not in ALLOWED_UP]


def room_counts(edges) -> Counter:
    """How many imports go from each room to each other room."""
    return Counter((e[2], e[3]) for e in edges if e[2] != e[3])


def test_every_module_is_in_a_room():
    rooms = {room_of(module_name(p)) for p in PACKAGE.rglob("*.py")}
    assert rooms <= set(LEVEL), f"modules in rooms missing from LAYERS: {sorted(rooms - set(LEVEL))}"


def test_no_upward_imports():
    edges = import_edges()
    assert edges, "found no package-internal imports at all: is PACKAGE right?"
    bad = upward(edges)
    assert not bad, "imports from a higher room:\n" + "\n".join(
        f"  {file}:{line}  {src} -> {dst}  ({target})" for file, line, src, dst, target in bad)
