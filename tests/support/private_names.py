"""Which private names of Faust, aiokafka, mode and river a source file uses, read as syntax.

The libraries' names are read from their installed sources (every ``_name`` they
define); a file's uses are an attribute ``x._name`` on anything but ``self``/``cls``,
``from faust... import _name``, and in a class derived from one of their classes,
``self._name`` or ``def _name``.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIBRARIES = ("faust", "aiokafka", "mode", "river")
OURS = ("stream", "training", "producers", "schemas")
ALLOWED = ROOT / "stream" / "runtime"


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def library_private_names() -> set[str]:
    names: set[str] = set()
    for lib in LIBRARIES:
        for path in Path(importlib.import_module(lib).__path__[0]).rglob("*.py"):
            try:
                tree = ast.parse(path.read_text(encoding="utf-8"))
            except (SyntaxError, UnicodeDecodeError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and _private(node.name):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store) and _private(node.attr):
                    names.add(node.attr)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store) and _private(node.id):
                    names.add(node.id)
    return names


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, ast.Attribute):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def uses(path: Path, library_names: set[str]) -> list[str]:
    """Where ``path`` names a private name of the libraries: ``line: name``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    from_libraries: set[str] = set()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in LIBRARIES:
            for alias in node.names:
                from_libraries.add(alias.asname or alias.name)
                if _private(alias.name):
                    found.append(f"{node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in LIBRARIES:
                    from_libraries.add(alias.asname or alias.name.split(".")[0])
    derived = [
        c
        for c in ast.walk(tree)
        if isinstance(c, ast.ClassDef) and any(_root_name(b) in from_libraries for b in c.bases)
    ]
    inside_derived = {id(n) for c in derived for n in ast.walk(c)}
    for c in derived:
        for item in c.body:
            if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in library_names:
                found.append(f"{item.lineno}: def {item.name} in {c.name}, a subclass of a library class")
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _private(node.attr) and node.attr in library_names):
            continue
        own = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
        if not own or id(node) in inside_derived:
            found.append(f"{node.lineno}: .{node.attr}")
    return sorted(found, key=lambda u: int(u.split(":")[0]))
