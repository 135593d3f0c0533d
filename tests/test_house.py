"""The shape of the code and its front page: what a newcomer meets first stays small."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("schemas", "stream", "training", "producers")


def test_the_readme_is_at_most_8000_characters():
    """Counted as UTF-8 bytes, the stricter count (the diagram's box characters are three bytes each)."""
    assert len((ROOT / "README.md").read_bytes()) <= 8000


def test_the_faust_app_is_wiring_no_function_in_stream_app_is_over_80_lines():
    long = []
    for path in sorted((ROOT / "stream" / "app").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > 80:
                    long.append(f"{path.name}:{node.name} ({lines} lines)")
    assert not long


def test_every_package_says_what_it_holds():
    bare = [
        str(init.relative_to(ROOT))
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
        if not ast.get_docstring(ast.parse(init.read_text()))
    ]
    assert not bare


def test_every_path_the_docs_name_exists():
    import re

    pages = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    named = {
        (page.name, match.group(1).rstrip("/"))
        for page in pages
        for match in re.finditer(
            r"`((?:stream|training|producers|schemas|tests|deploy|docs)/[\w./-]+)`", page.read_text(encoding="utf-8")
        )
    }
    missing = sorted((page, path) for page, path in named if not (ROOT / path).exists())
    assert named and not missing
