"""Readers: one per data set layout, all producing :class:`~mer.data.records.SampleRecord`.

:func:`read_records` picks a reader by format name from :data:`READERS`; unknown names list
the valid ones. Each reader module has ``read(root, *, label_map, log, sheet=None)`` and a
``DEFAULT_MAP`` (a label-map name, or None for the manifest).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from types import ModuleType

from mer.data.errors import DataError, ProblemLog
from mer.data.labels import LabelMap, load_label_map, map_from_classes
from mer.data.readers import casme2, casme3, composite, manifest, samm, smic
from mer.data.records import SampleRecord

log = logging.getLogger("mer.data")

READERS: dict[str, ModuleType] = {
    "casme2": casme2,
    "samm": samm,
    "smic": smic,
    "casme3": casme3,
    "composite": composite,
    "manifest": manifest,
}


def check_format(fmt: str) -> ModuleType:
    if fmt not in READERS:
        raise ValueError(f"unknown data format {fmt!r}; valid: {', '.join(READERS)}")
    return READERS[fmt]


def resolve_label_map(fmt: str, root: Path, label_map: str | Path | LabelMap | None) -> LabelMap:
    """The given map, else the format's default (the manifest's: its own sorted emotions)."""
    if isinstance(label_map, LabelMap):
        return label_map
    if label_map is not None:
        return load_label_map(label_map)
    default = check_format(fmt).DEFAULT_MAP
    if default is None:
        return map_from_classes("manifest", manifest.emotions(root))
    return load_label_map(default)


def read_records(
    root: str | Path,
    fmt: str,
    *,
    label_map: str | Path | LabelMap | None = None,
    skip_bad: bool = False,
    sheet: str | Path | None = None,
    problems: ProblemLog | None = None,
) -> tuple[list[SampleRecord], LabelMap, ProblemLog]:
    """Read every sample record of a data set.

    Returns (records, label map used, problem log). Records whose emotion the map excludes are
    returned with ``label=None``. With ``skip_bad=False`` any bad row raises one DataError
    listing all of them; with ``skip_bad=True`` they are in the problem log.
    """
    reader = check_format(fmt)
    root = Path(root)
    if not root.exists():
        raise DataError("data folder not found", file=root)
    lmap = resolve_label_map(fmt, root, label_map)
    plog = problems or ProblemLog(skip_bad=skip_bad)
    records = reader.read(root, label_map=lmap, log=plog, sheet=sheet)
    keys = Counter(r.key for r in records)
    dups = [k for k, n in keys.items() if n > 1]
    if dups:
        kept: dict[str, SampleRecord] = {}
        for r in records:
            if r.key in kept:
                plog.add(DataError(f"duplicate sample (first at {kept[r.key].source})", file=r.source), sample=r.key)
            else:
                kept[r.key] = r
        records = list(kept.values())
    plog.raise_if_any(f"reading {fmt} records from {root}")
    unknown = Counter(code for r in records for code in r.unknown_aus)
    if unknown:
        log.warning(
            "%s: %d unknown AU code(s) kept verbatim: %s",
            fmt,
            sum(unknown.values()),
            ", ".join(f"{c!r} x{n}" for c, n in unknown.most_common()),
        )
    return records, lmap, plog
