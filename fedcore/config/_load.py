"""Generic TOML -> frozen dataclass loading that collects every problem instead of stopping at one.

Each config section is a frozen dataclass whose fields carry their defaults; :func:`section`
checks every key of a TOML table against the field types (``bool``, ``int``, ``float``, ``str``,
``Path``, ``dict``, ``list[str]``), reports unknown keys with the allowed ones, and appends every
problem to a shared list so that the caller raises one :class:`ConfigError` at the end.
"""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fedcore.common.errors import ConfigError

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

T = TypeVar("T", bound="DataclassInstance")  # section() builds dataclasses only


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error becomes a ConfigError naming the file."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"file not found: {path}", source=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"not valid TOML: {exc}", source=str(path)) from None


def _type_name(tp: Any) -> str:
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        tp = next(a for a in args if a is not type(None))
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path string",
        dict: "a table",
    }.get(tp, "a list of strings")


def _convert(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, converted value) for one TOML value against a field type (``X | None``: as X; TOML
    has no null, so None is only ever the field's default)."""
    args = typing.get_args(tp)
    if type(None) in args and len(args) == 2:
        tp = next(a for a in args if a is not type(None))
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    if tp is Path:
        return isinstance(value, str) and value != "", Path(value) if isinstance(value, str) else value
    if tp is dict or typing.get_origin(tp) is dict:
        return isinstance(value, dict), dict(value) if isinstance(value, dict) else value
    if typing.get_origin(tp) in (list, tuple):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return ok, tuple(value) if ok else value
    raise TypeError(f"unsupported config field type {tp!r}")


def section(cls: type[T], table: Any, name: str, problems: list[str], *, rest: str | None = None) -> T:
    """Build ``cls`` from a TOML table; append problems; fall back to defaults for bad values.

    ``rest`` names a ``dict`` field that receives every key not declared by ``cls`` (e.g. the
    options of ``[strategy]``); without it unknown keys are problems.
    """
    if table is None:
        table = {}
    if not isinstance(table, dict):
        problems.append(f"[{name}] must be a table (got {type(table).__name__})")
        table = {}
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for key, value in table.items():
        if key not in fields or key == rest:
            if rest is not None:
                extra[key] = value
            else:
                problems.append(f"[{name}] unknown key {key!r} (expected one of: {', '.join(fields)})")
            continue
        ok, converted = _convert(value, hints[key])
        if ok:
            values[key] = converted
        else:
            problems.append(f"[{name}] {key} must be {_type_name(hints[key])} (got {value!r})")
    for key, f in fields.items():
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        if key not in values and required and key != rest:
            problems.append(f"[{name}] {key} is required")
            values[key] = _placeholder(hints[key])
    if rest is not None:
        values[rest] = extra
    return cls(**values)


def _placeholder(tp: Any) -> Any:
    return {bool: False, int: 0, float: 0.0, str: "", Path: Path(".")}.get(tp, {})


def check_tables(data: dict[str, Any], allowed: tuple[str, ...], problems: list[str]) -> None:
    for key in data:
        if key not in allowed:
            problems.append(f"unknown section [{key}] (expected one of: {', '.join(allowed)})")


def resolve(base: Path, path: Path) -> Path:
    """``path`` made absolute: relative paths are taken relative to ``base`` (the config's folder)."""
    path = path.expanduser()
    return path if path.is_absolute() else (base / path).resolve()


def positive(problems: list[str], where: str, value: float, *, zero_ok: bool = False) -> None:
    if value < 0 or (value == 0 and not zero_ok):
        problems.append(f"{where} must be {'>= 0' if zero_ok else '> 0'} (got {value})")
