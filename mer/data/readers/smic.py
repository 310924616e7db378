"""SMIC-HS (Li et al. 2013): ``ROOT/s1/micro/negative/s1_ne_01/image106720.bmp``.

Labels come from the folder (negative / positive / surprise); there is no sheet and **no apex
annotation**: the onset is the clip's first frame, the offset its last, and the apex is taken
as the middle frame (``apex_estimated=True``; the loader logs how many clips this affects).
SMIC has no AU coding (``au_known=False``). Folders other than ``micro`` (e.g. ``non_micro``)
are not read. ROOT may also be the ``HS`` folder's parent if it holds exactly an ``HS`` folder.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from mer.data.errors import DataError, ProblemLog
from mer.data.frames import frame_index
from mer.data.labels import LabelMap, normalise_label
from mer.data.records import SampleRecord

DATASET = "smic"
DEFAULT_MAP = "composite-3"
log_ = logging.getLogger(__name__)
_SUBJECT = re.compile(r"^s\d+$", re.IGNORECASE)


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    if sheet is not None:
        raise ValueError("SMIC has no coding sheet: its labels come from the folder layout")
    if not any(_SUBJECT.match(p.name) for p in root.iterdir() if p.is_dir()) and (root / "HS").is_dir():
        root = root / "HS"
    subjects = sorted(
        (p for p in root.iterdir() if p.is_dir() and _SUBJECT.match(p.name)), key=lambda p: int(p.name[1:])
    )
    if not subjects:
        raise DataError("no subject folders s1, s2, ... found (expected ROOT/s1/micro/<emotion>/<clip>/)", file=root)
    out: list[SampleRecord] = []
    for sub in subjects:
        micro = sub / "micro"
        if not micro.is_dir():
            log.add(
                DataError("subject folder has no 'micro' folder", file=sub.relative_to(root)), sample=f"smic/{sub.name}"
            )
            continue
        for emo_dir in sorted(p for p in micro.iterdir() if p.is_dir()):
            for clip in sorted(p for p in emo_dir.iterdir() if p.is_dir()):
                rel = clip.relative_to(root)
                ref = f"{DATASET}/{sub.name}/{clip.name}"
                try:
                    label = label_map.map(emo_dir.name)
                    index = frame_index(clip)
                    if len(index) < 2:
                        raise DataError(f"clip has {len(index)} frame(s), need at least 2")
                    frames = list(index.values())
                    out.append(
                        SampleRecord(
                            dataset=DATASET,
                            subject=sub.name,
                            sample_id=clip.name,
                            emotion=normalise_label(emo_dir.name),
                            label=label,
                            onset=frames[0],
                            apex=frames[len(frames) // 2],
                            offset=frames[-1],
                            au_known=False,
                            apex_estimated=True,
                            source=str(rel),
                        )
                    )
                except DataError as err:
                    log.add(DataError(err.message, file=rel), sample=ref)
    log_.info("SMIC: %d clips have no apex annotation; apex = middle frame", len(out))
    return out
