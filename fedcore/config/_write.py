"""A small TOML writer for the config files fedcore generates (tomllib only reads).

Supports what the configs hold: strings, booleans, integers, finite floats, lists of those, and
nested tables (written as ``[a.b]`` headers after the scalar keys of ``[a]``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            raise ValueError(f"TOML cannot hold {v}")
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if hasattr(v, "__fspath__"):
        return json.dumps(str(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise ValueError(f"cannot write {type(v).__name__} to TOML")


def _table(name: str, table: Mapping[str, Any], out: list[str], comments: Mapping[str, str]) -> None:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
    subs = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    if name and (scalars or not subs):
        out.append(f"[{name}]")
    for k, v in scalars.items():
        note = comments.get(f"{name}.{k}" if name else k)
        out.append(f"{_key(k)} = {_value(v)}" + (f"  # {note}" if note else ""))
    if name and (scalars or not subs):
        out.append("")
    for k, v in subs.items():
        _table(f"{name}.{_key(k)}" if name else _key(k), v, out, comments)


def dumps(data: Mapping[str, Any], header: str = "", comments: Mapping[str, str] | None = None) -> str:
    """TOML text for ``data``; ``comments`` maps "section.key" to an end-of-line comment."""
    out = [f"# {line}" if line else "#" for line in header.splitlines()]
    if out:
        out.append("")
    _table("", data, out, comments or {})
    return "\n".join(out).rstrip() + "\n"


def field_comments(cls: type, section: str) -> dict[str, str]:
    """``{"section.field": comment}`` from the end-of-line comments of a config dataclass's source,
    so generated files document every key with the same words as the code."""
    import inspect

    out = {}
    for line in inspect.getsource(cls).splitlines():
        m = re.match(r"^\s+(\w+): [^=]+=.*?#\s*(.+)$", line)
        if m:
            out[f"{section}.{m.group(1)}"] = m.group(2).strip()
    return out
