"""SAMM (Davison et al. 2018): ``ROOT/006/006_1_2/006_05562.jpg`` + the FACS sheet.

The sheet (``SAMM_Micro_FACS_Codes_v2.xlsx``) opens with a block of title and note rows; the
real header (Subject, Filename, Inducement Code, Onset Frame, Apex Frame, Offset Frame,
Duration, Type, Action Units, Notes, Estimated Emotion, Objective Classes) is found below it
by :func:`mer.data.sheets.read_sheet`. Subject cells are ``6`` or ``006``; folders are
zero-padded to three digits.
"""

from __future__ import annotations

from pathlib import Path

from mer.data.errors import ProblemLog
from mer.data.labels import LabelMap
from mer.data.readers._coded import OPTIONAL, REQUIRED, find_child, records_from_sheet
from mer.data.records import SampleRecord
from mer.data.sheets import find_sheet, read_sheet

DATASET = "samm"
DEFAULT_MAP = "samm-5"


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    sh = read_sheet(find_sheet(root, "samm", sheet), REQUIRED, OPTIONAL)

    def clip_dir(subject: str, filename: str):
        sub = subject.zfill(3) if subject.isdigit() else subject
        sub_dir = find_child(root, sub) or root / sub
        return sub_dir.name, [find_child(sub_dir, filename) or sub_dir / filename]

    return records_from_sheet(sh, dataset=DATASET, root=root, label_map=label_map, log=log, clip_dir=clip_dir)
