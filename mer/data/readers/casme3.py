"""CAS(ME)^3 part A (Li et al. 2022): ``ROOT/spNO.1/a/color/0.jpg`` + the label sheet.

The sheet (``cas(me)3_part_A_ME_label_JpgIndex_v2.xlsx``) has columns Subject, Filename,
Onset, Apex, Offset, AU, Objective class, emotion; Subject cells are ``spNO.1`` or a number
(read as ``spNO.<n>``). Frames are looked up in ``<clip>/color/`` first (the release keeps
depth frames beside them in ``depth/``), then in ``<clip>/`` itself.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mer.data.errors import ProblemLog
from mer.data.labels import LabelMap
from mer.data.readers._coded import OPTIONAL, REQUIRED, find_child, records_from_sheet
from mer.data.records import SampleRecord
from mer.data.sheets import find_sheet, read_sheet

DATASET = "casme3"
DEFAULT_MAP = "composite-3"


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    sh = read_sheet(find_sheet(root, "part_a", sheet), REQUIRED, OPTIONAL)

    def clip_dir(subject: str, filename: str):
        sub = f"spNO.{subject}" if subject.isdigit() else subject
        sub_dir = find_child(root, sub) or root / sub
        clip = find_child(sub_dir, filename) or sub_dir / filename
        return sub_dir.name, [clip / "color", clip]

    recs = records_from_sheet(sh, dataset=DATASET, root=root, label_map=label_map, log=log, clip_dir=clip_dir)
    # the clip id is the filename cell, not the "color" folder
    return [replace(r, sample_id=r.onset.parent.parent.name) if r.onset.parent.name == "color" else r for r in recs]
