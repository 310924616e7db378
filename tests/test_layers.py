"""Imports point one way (ARCHITECTURE.md): fedcore never imports mer, and the lower layers of
fedcore never import the ones above them -- checked on the source, function-level imports included."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: package -> packages it must never import (at module or function level)
FORBIDDEN = {
    "fedcore": ("mer",),
    "fedcore/dp": ("fedcore.secagg", "fedcore.he", "fedcore.client", "fedcore.coordinator", "fedcore.transport"),
    "fedcore/common": ("fedcore.secagg", "fedcore.he", "fedcore.dp", "fedcore.client", "fedcore.coordinator"),
    "fedcore/secagg": ("fedcore.client", "fedcore.coordinator", "fedcore.he"),
    "fedcore/he": ("fedcore.client", "fedcore.coordinator", "fedcore.secagg"),
    "fedcore/coordinator": ("fedcore.client",),  # the Workload contract lives in fedcore.common.workload
    "fedcore/client": ("fedcore.coordinator",),
    # the transports carry messages between the two daemons and know neither
    "fedcore/transport": ("fedcore.client", "fedcore.coordinator", "fedcore.secagg", "fedcore.he", "fedcore.dp"),
}


def _imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
    return out


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_layer_imports_a_layer_above_it(package):
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if "proto/fedpsyau" in str(path):
            continue
        for line, name in _imports(path):
            if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[package]):
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "\n".join(bad)
