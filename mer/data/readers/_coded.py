"""Shared logic of the sheet + frame-folder readers (CASME II, SAMM, CAS(ME)^3).

One sheet row becomes one :class:`SampleRecord`: the subject and filename cells name the clip
folder, the onset/apex/offset cells name frames in it by number. Quirks handled, each visible
in the record or the report:

- a missing or non-numeric apex (CASME II writes ``/`` for a few clips) -> the middle frame
  between onset and offset, ``apex_estimated=True``;
- an offset that is missing, 0 or not on disk -> ``offset=None`` (flow needs only onset and apex);
- folder names matched case-insensitively when the exact name is absent.

Every other problem (no folder, no onset/apex frame, unknown emotion) becomes a DataError
naming the sheet file and row, collected in the :class:`ProblemLog`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mer.data.aus import parse_aus
from mer.data.errors import DataError, ProblemLog
from mer.data.frames import describe_range, frame_index
from mer.data.labels import LabelMap, normalise_label
from mer.data.records import SampleRecord
from mer.data.sheets import Sheet

REQUIRED = ("subject", "filename", "onset", "apex", "emotion")
OPTIONAL = ("offset", "aus", "objective")


def frame_number(text: str) -> int | None:
    """Frame number from a cell: "46", "46.0" -> 46; "", "/", "-", negatives, words -> None."""
    try:
        n = float(text)
    except (TypeError, ValueError):
        return None
    return int(n) if n >= 0 and float(n).is_integer() else None


def find_child(parent: Path, name: str) -> Path | None:
    """``parent/name``, or the one child whose name matches case-insensitively."""
    exact = parent / name
    if exact.is_dir():
        return exact
    if not parent.is_dir():
        return None
    low = name.lower()
    hits = [p for p in parent.iterdir() if p.is_dir() and p.name.lower() == low]
    return hits[0] if len(hits) == 1 else None


ClipDir = Callable[[str, str], tuple[str, list[Path]]]
"""(subject cell, filename cell) -> (subject id, candidate clip folders in order of preference)."""


def records_from_sheet(
    sheet: Sheet, *, dataset: str, root: Path, label_map: LabelMap, log: ProblemLog, clip_dir: ClipDir
) -> list[SampleRecord]:
    out: list[SampleRecord] = []
    try:
        where = str(sheet.path.relative_to(root))
    except ValueError:
        where = str(sheet.path)
    for rownum, row in sheet.rows:
        ref = f"{dataset}/{row.get('subject', '')}/{row.get('filename', '')}"
        try:
            out.append(
                _record(
                    row,
                    dataset=dataset,
                    root=root,
                    label_map=label_map,
                    clip_dir=clip_dir,
                    source=f"{where} row {rownum}",
                )
            )
        except DataError as err:
            log.add(DataError(err.message, file=where, row=rownum), sample=ref)
    return out


def _record(
    row: dict[str, str], *, dataset: str, root: Path, label_map: LabelMap, clip_dir: ClipDir, source: str
) -> SampleRecord:
    if not row.get("subject") or not row.get("filename"):
        raise DataError(f"empty Subject or Filename cell (got {row.get('subject')!r}, {row.get('filename')!r})")
    subject, candidates = clip_dir(row["subject"], row["filename"])
    folder = next((c for c in candidates if c.is_dir()), None)
    if folder is None:
        shown = " or ".join(str(c.relative_to(root)) if c.is_relative_to(root) else str(c) for c in candidates)
        raise DataError(f"frame folder {shown} not found")
    rel = folder.relative_to(root) if folder.is_relative_to(root) else folder
    emotion = normalise_label(row["emotion"])
    label = label_map.map(emotion)  # DataError for an unknown label
    onset_n = frame_number(row["onset"])
    if onset_n is None:
        raise DataError(f"onset frame must be a frame number (got {row['onset']!r})")
    offset_n = frame_number(row.get("offset", ""))
    offset_n = offset_n if offset_n and offset_n > onset_n else None
    apex_n = frame_number(row["apex"])
    estimated = False
    if apex_n is None or apex_n == 0:
        if offset_n is None:
            raise DataError(f"apex frame {row['apex']!r} is not a number and there is no offset to estimate it from")
        apex_n, estimated = (onset_n + offset_n) // 2, True
    if apex_n < onset_n:
        raise DataError(f"apex frame {apex_n} precedes onset frame {onset_n}")
    index = frame_index(folder)
    paths = {}
    for name, n in (("onset", onset_n), ("apex", apex_n)):
        if n not in index:
            if estimated and name == "apex":  # the middle frame may be absent from a sparse clip
                n = min(index, key=lambda k: abs(k - n)) if index else n
                apex_n = n
            if n not in index:
                raise DataError(f"{name} frame {n} not found in {rel} ({describe_range(index)})")
        paths[name] = index[n]
    code = parse_aus(row.get("aus", ""))
    return SampleRecord(
        dataset=dataset,
        subject=subject,
        sample_id=folder.name,
        emotion=emotion,
        label=label,
        aus=code.aus,
        unknown_aus=code.unknown,
        onset=paths["onset"],
        apex=paths["apex"],
        offset=index.get(offset_n) if offset_n is not None else None,
        au_known="aus" in row,
        apex_estimated=estimated,
        source=source,
    )
