"""A generic manifest CSV, for data sets without a dedicated reader.

ROOT is the CSV file itself or a folder holding ``manifest.csv``. Paths in it are relative to
the CSV's folder (absolute paths also work). Columns (header names, any order):

============  ========  ===============================================================
column        needed    meaning
============  ========  ===============================================================
subject       yes       subject id, unique within the data set
sample_id     yes       clip id, unique within the subject (``sample`` also accepted)
emotion       yes       native emotion label (``label`` also accepted)
dataset       no        data set name (default ``manifest``)
onset, apex   either    frame image paths (apex frame may be any frame after onset)
offset        no        frame image path
flow          or        a precomputed flow image: a square 3-channel 8-bit PNG (decoded as
                        the composite's: R, G, B = u, v, strain) or a float32 ``.npy``
                        of shape (3, S, S), loaded with ``allow_pickle=False``
aus           no        FACS AU string (``1+2+L10``); a missing column or empty cell means
                        "not AU-coded" (``au_known=False``)
============  ========  ===============================================================

A row has frame paths (onset and apex) or a flow path, not both. Without an explicit label
map the classes are the sorted set of emotions in the file.
"""

from __future__ import annotations

import csv
from pathlib import Path

from mer.data.aus import parse_aus
from mer.data.errors import DataError, ProblemLog
from mer.data.labels import LabelMap, normalise_label
from mer.data.records import SampleRecord

DEFAULT_MAP = None
_ALIASES = {"sample": "sample_id", "label": "emotion", "flow_image": "flow"}


def manifest_path(root: Path) -> Path:
    path = root / "manifest.csv" if root.is_dir() else root
    if not path.is_file():
        raise DataError("manifest CSV not found (pass the CSV or a folder holding manifest.csv)", file=path)
    return path


def rows(path: Path) -> list[tuple[int, dict[str, str]]]:
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read the manifest ({exc})", file=path) from None
    reader = csv.DictReader(text.splitlines())
    header = [_ALIASES.get(h.strip().lower(), h.strip().lower()) for h in (reader.fieldnames or [])]
    missing = [c for c in ("subject", "sample_id", "emotion") if c not in header]
    if missing:
        raise DataError(f"manifest lacks column(s) {', '.join(missing)} (got {', '.join(header) or 'none'})", file=path)
    if "flow" not in header and not {"onset", "apex"} <= set(header):
        raise DataError("manifest needs onset and apex columns or a flow column", file=path)
    out = []
    for rownum, raw in enumerate(reader, start=2):
        row = {_ALIASES.get(k.strip().lower(), k.strip().lower()): (v or "").strip() for k, v in raw.items() if k}
        row["_has_aus"] = "aus" in header
        if any(v for k, v in row.items() if k != "_has_aus"):
            out.append((rownum, row))
    return out


def emotions(root: Path) -> list[str]:
    """Sorted distinct emotions in the manifest (the default classes)."""
    return sorted({normalise_label(r["emotion"]) for _, r in rows(manifest_path(root)) if r["emotion"]})


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    path = manifest_path(Path(sheet) if sheet is not None else root)
    base = path.parent
    out = []
    for rownum, row in rows(path):
        ref = f"{row.get('dataset') or 'manifest'}/{row['subject']}/{row['sample_id']}"
        try:
            out.append(_record(base, row, label_map, f"{path.name} row {rownum}"))
        except DataError as err:
            log.add(DataError(err.message, file=path.name, row=rownum), sample=ref)
    return out


def _path(base: Path, cell: str, what: str) -> Path:
    p = Path(cell)
    p = p if p.is_absolute() else base / p
    if not p.is_file():
        raise DataError(f"{what} file {cell} not found")
    return p


def _record(base: Path, row: dict, label_map: LabelMap, source: str) -> SampleRecord:
    for c in ("subject", "sample_id", "emotion"):
        if not row.get(c):
            raise DataError(f"empty {c} cell")
    has_frames = bool(row.get("onset") or row.get("apex"))
    if has_frames == bool(row.get("flow")):
        raise DataError(
            f"give either onset and apex frame paths or a flow path (got {'both' if has_frames else 'neither'})"
        )
    label = label_map.map(row["emotion"])
    code = parse_aus(row.get("aus", ""))
    kw: dict = {}
    if has_frames:
        if not row.get("onset") or not row.get("apex"):
            raise DataError("both onset and apex frame paths are needed")
        kw = {
            "onset": _path(base, row["onset"], "onset frame"),
            "apex": _path(base, row["apex"], "apex frame"),
            "offset": _path(base, row["offset"], "offset frame") if row.get("offset") else None,
        }
    else:
        flow = _path(base, row["flow"], "flow image")
        if flow.suffix.lower() not in (".png", ".npy"):
            raise DataError(f"flow image must be .png or .npy (got {flow.suffix or 'no suffix'})")
        kw = {"flow_image": flow}
    return SampleRecord(
        dataset=row.get("dataset") or "manifest",
        subject=row["subject"],
        sample_id=row["sample_id"],
        emotion=normalise_label(row["emotion"]),
        label=label,
        aus=code.aus,
        unknown_aus=code.unknown,
        au_known=bool(row["_has_aus"] and row.get("aus")),
        source=source,
        **kw,
    )
