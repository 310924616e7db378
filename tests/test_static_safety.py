"""Static safety of fedcore/ and mer/: no code path can deserialise received data into code.

An AST scan (import aliases resolved, so ``from pickle import loads as l; l(x)`` is caught) fails
on any call to ``pickle.load(s)``, ``torch.load``, ``eval``, ``exec``, ``marshal.load(s)``,
``shelve.open``, ``yaml.load`` / ``yaml.unsafe_load``, or ``numpy.load`` without an explicit
``allow_pickle=False``. Then ruff's security rules (flake8-bandit, ``--select S``) must pass: each
remaining finding in the sources carries a per-line ``# noqa: S...`` with its reason.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("fedcore", "mer")

#: fully-qualified callables that can run code hidden in data
FORBIDDEN = {
    "pickle.load",
    "pickle.loads",
    "pickle.Unpickler",
    "_pickle.load",
    "_pickle.loads",
    "cPickle.loads",
    "dill.load",
    "dill.loads",
    "marshal.load",
    "marshal.loads",
    "shelve.open",
    "torch.load",
    "torch.serialization.load",
    "yaml.load",
    "yaml.unsafe_load",
    "yaml.full_load",
    "builtins.eval",
    "builtins.exec",
    "eval",
    "exec",
    "jsonpickle.decode",
}
NUMPY_LOADS = {"numpy.load"}


def _aliases(tree: ast.AST) -> dict[str, str]:
    """Local name -> fully-qualified name, from the module's imports."""
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                out[a.asname or a.name] = f"{node.module}.{a.name}"
    return out


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def _qualified(name: str, aliases: dict[str, str]) -> str:
    head, _, rest = name.partition(".")
    full = aliases.get(head, head)
    return f"{full}.{rest}" if rest else full


def _pickle_off(call: ast.Call) -> bool:
    return any(
        k.arg == "allow_pickle" and isinstance(k.value, ast.Constant) and k.value.value is False for k in call.keywords
    )


def scan_source(text: str, filename: str = "<source>") -> list[str]:
    """Every forbidden call in ``text`` as 'file:line: name'."""
    tree = ast.parse(text, filename)
    aliases = _aliases(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name is None:
            continue
        full = _qualified(name, aliases)
        if full in FORBIDDEN or name in ("eval", "exec"):
            found.append(f"{filename}:{node.lineno}: {full}")
        elif full in NUMPY_LOADS and not _pickle_off(node):
            found.append(f"{filename}:{node.lineno}: {full} without allow_pickle=False")
    return found


def _sources():
    for pkg in PACKAGES:
        yield from sorted((ROOT / pkg).rglob("*.py"))


def test_no_source_calls_a_deserialiser_that_can_run_code():
    found = [hit for path in _sources() for hit in scan_source(path.read_text(), str(path.relative_to(ROOT)))]
    assert not found, "unsafe deserialisation or dynamic code:\n" + "\n".join(found)
    assert sum(1 for _ in _sources()) > 50  # the scan really covered the packages


@pytest.mark.parametrize(
    "snippet",
    [
        "import pickle\npickle.loads(b'')",
        "from pickle import loads as l\nl(b'')",
        "import torch\ntorch.load('m.pt')",
        "import numpy as np\nnp.load('a.npy')",
        "import numpy as np\nnp.load('a.npy', allow_pickle=True)",
        "from numpy import load\nload('a.npz')",
        "eval('1')",
        "exec('x = 1')",
        "import marshal\nmarshal.loads(b'')",
        "import yaml\nyaml.load('a: 1')",
        "import shelve\nshelve.open('db')",
    ],
)
def test_the_scanner_catches_each_forbidden_call(snippet):
    assert scan_source(snippet)


def test_the_scanner_allows_the_safe_forms():
    safe = (
        "import numpy as np\nnp.load('a.npz', allow_pickle=False)\nimport yaml\nyaml.safe_load('a: 1')\n"
        "import json\njson.loads('{}')\nmodel.eval()\n"
    )
    assert scan_source(safe) == []


def test_ruff_security_rules_pass_on_fedcore_and_mer():
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run(
        [ruff, "check", "--select", "S", "--no-cache", "--output-format", "concise", *PACKAGES],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"ruff --select S found:\n{out.stdout}{out.stderr}"


def test_the_tree_is_ruff_formatted():
    """``ruff format`` was applied once; new code keeps the format (``ruff format`` fixes it)."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    out = subprocess.run(
        [ruff, "format", "--check", "--no-cache", "fedcore", "mer", "tests", "benchmarks"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, f"not ruff-formatted (run `ruff format`):\n{out.stdout}{out.stderr}"
