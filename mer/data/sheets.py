"""Coding sheets (.xlsx or .csv) with a header row that may sit below a header block.

SAMM's FACS sheet opens with several rows of title and notes before the real header; CASME II's
starts at row 1. :func:`read_sheet` finds the header as the first row (within
``max_header_rows``) that contains every required column, matched by alias after removing case,
spaces and punctuation ("Onset Frame" = "OnsetFrame" = "onset_frame"). Cells come back as
strings ("46", not 46.0); wholly empty rows are skipped; row numbers are the sheet's own
(1-based), for error messages.
"""

from __future__ import annotations

import csv
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

from mer.data.errors import DataError

#: canonical column -> accepted header spellings (normalised: lower case, alphanumerics only)
ALIASES: dict[str, tuple[str, ...]] = {
    "subject": ("subject", "sub", "participant", "subjectid"),
    "filename": ("filename", "file", "video", "clip", "episode"),
    "onset": ("onsetframe", "onset", "onsetf", "onsetframeindex"),
    "apex": ("apexframe", "apex", "apexf", "apexframeindex"),
    "offset": ("offsetframe", "offset", "offsetf", "offsetframeindex"),
    "aus": ("actionunits", "actionunit", "aus", "au", "facs"),
    "emotion": ("estimatedemotion", "emotion", "emotions", "estimatedemotions"),
    "objective": ("objectiveclasses", "objectiveclass"),
}


def _norm(cell: object) -> str:
    return re.sub(r"[^a-z0-9]", "", str(cell).lower()) if cell is not None else ""


def cell_text(value: object) -> str:
    """A cell as text: None -> "", 46.0 -> "46", strings trimmed."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


@dataclass(frozen=True)
class Sheet:
    path: Path
    header_row: int
    columns: dict[str, int]  # canonical name -> column position
    rows: list[tuple[int, dict[str, str]]]  # (sheet row number, canonical name -> text)


def _raw_rows(path: Path) -> list[list[list[object]]]:
    """All tables of the file: one per worksheet for .xlsx, one for .csv."""
    suffix = path.suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except (zipfile.BadZipFile, OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read the coding sheet as .xlsx ({type(exc).__name__}: {exc})", file=path) from None
        try:
            return [[list(r) for r in ws.iter_rows(values_only=True)] for ws in wb.worksheets]
        finally:
            wb.close()
    if suffix in (".csv", ".tsv", ".txt"):
        raw = path.read_bytes()
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            text = raw.decode("latin-1")
        if "\x00" in text:
            raise DataError("cannot read the coding sheet: it contains NUL bytes (not a text CSV)", file=path)
        try:
            dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
        except csv.Error:
            dialect = csv.excel
        return [[list(r) for r in csv.reader(text.splitlines(), dialect)]]
    raise DataError(f"unsupported coding sheet type {suffix!r} (expected .xlsx or .csv)", file=path)


def read_sheet(
    path: str | Path, required: tuple[str, ...], optional: tuple[str, ...] = (), max_header_rows: int = 40
) -> Sheet:
    """Read the first table in ``path`` that has a header row with all ``required`` columns."""
    path = Path(path)
    if not path.is_file():
        raise DataError("coding sheet not found", file=path)
    tables = _raw_rows(path)
    first_seen = None
    for table in tables:
        for i, row in enumerate(table[:max_header_rows]):
            normed = [_norm(c) for c in row]
            if first_seen is None and any(normed):
                first_seen = [cell_text(c) for c in row if cell_text(c)]
            cols: dict[str, int] = {}
            for name in required + optional:
                for j, cell in enumerate(normed):
                    if cell in ALIASES.get(name, (name,)):
                        cols.setdefault(name, j)
                        break
            if all(r in cols for r in required):
                rows = []
                for k, r in enumerate(table[i + 1 :], start=i + 2):
                    values = {name: cell_text(r[j]) if j < len(r) else "" for name, j in cols.items()}
                    if any(values.values()):
                        rows.append((k, values))
                return Sheet(path, i + 1, cols, rows)
    want = ", ".join(required)
    raise DataError(
        f"no header row with columns {want} in the first {max_header_rows} rows (first non-empty row: {first_seen})",
        file=path,
    )


def find_sheet(root: Path, hint: str, explicit: str | Path | None = None) -> Path:
    """The coding sheet: ``explicit`` if given, else the one .xlsx/.csv in ``root`` (prefer names with ``hint``)."""
    if explicit is not None:
        return Path(explicit)
    cands = sorted(
        p
        for p in root.iterdir()
        if p.is_file() and p.suffix.lower() in (".xlsx", ".csv") and not p.name.startswith(("~$", "."))
    )
    hinted = [p for p in cands if hint in p.name.lower()]
    pool = hinted or cands
    if not pool:
        raise DataError("no coding sheet (.xlsx or .csv) found; pass it explicitly", file=root)
    if len(pool) > 1:
        raise DataError(
            f"several coding sheets found ({', '.join(p.name for p in pool)}); pass one explicitly", file=root
        )
    return pool[0]
