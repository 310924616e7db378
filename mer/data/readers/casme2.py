"""CASME II (Yan et al. 2014): ``ROOT/sub01/EP02_01f/img46.jpg`` + the coding sheet.

The sheet (``CASME2-coding-*.xlsx`` or a .csv export) sits in ROOT or is passed as ``sheet``;
columns Subject, Filename, OnsetFrame, ApexFrame, OffsetFrame, Action Units, Estimated Emotion.
Subject cells are numbers (``1``, ``01``) or folder names (``sub01``). Frames may be named
``img46.jpg`` (raw) or ``reg_img46.jpg`` (cropped release). Subject ids are the folder names.
"""

from __future__ import annotations

from pathlib import Path

from mer.data.errors import ProblemLog
from mer.data.labels import LabelMap
from mer.data.readers._coded import OPTIONAL, REQUIRED, find_child, records_from_sheet
from mer.data.records import SampleRecord
from mer.data.sheets import find_sheet, read_sheet

DATASET = "casme2"
DEFAULT_MAP = "casme2-5"


def subject_folder(cell: str) -> str:
    return f"sub{int(cell):02d}" if cell.isdigit() else cell


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    sh = read_sheet(find_sheet(root, "coding", sheet), REQUIRED, OPTIONAL)

    def clip_dir(subject: str, filename: str):
        sub = subject_folder(subject)
        sub_dir = find_child(root, sub) or root / sub
        return sub_dir.name, [find_child(sub_dir, filename) or sub_dir / filename]

    return records_from_sheet(sh, dataset=DATASET, root=root, label_map=label_map, log=log, clip_dir=clip_dir)
