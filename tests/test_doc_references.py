"""Every test the documents name as the backing of a claim exists (file and function).

README.md, docs/SECURITY.md and docs/FAULTS.md cite tests as ``tests/path/test_x.py::test_name``; a
renamed or deleted test would leave a guarantee without its check, so this fails instead.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/SECURITY.md", "docs/FAULTS.md"]
REFERENCE = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _references() -> list[tuple[str, str, str]]:
    out = []
    for doc in DOCS:
        path = ROOT / doc
        if path.exists():
            out += [(doc, f, name) for f, name in REFERENCE.findall(path.read_text())]
    return out


def test_the_documents_cite_tests_at_all():
    assert len({(f, n) for _, f, n in _references()}) >= 40


@pytest.mark.parametrize("doc,file,name", sorted(set(_references())))
def test_every_cited_test_exists(doc, file, name):
    path = ROOT / file
    assert path.is_file(), f"{doc} cites {file}::{name}, but {file} does not exist"
    assert name in _functions(path), f"{doc} cites {file}::{name}, which is not defined there"
