"""Layering rules, checked on the source: only driver/ touches ctypes; writers/ stands alone."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("path", sorted((REPO / "ioc").glob("*.py")), ids=lambda p: p.name)
def test_the_ioc_never_uses_ctypes(path):
    names = imported_modules(path)
    assert not any(n == "ctypes" or n.startswith("ctypes.") for n in names)
    assert not any("driver._lib" in n for n in names)


@pytest.mark.parametrize("path", sorted((REPO / "writers").glob("*.py")), ids=lambda p: p.name)
def test_the_writers_do_not_depend_on_the_ioc_or_the_driver(path):
    names = imported_modules(path)
    assert not any(n.startswith(("xspress3.ioc", "xspress3.driver", "ctypes")) for n in names)
