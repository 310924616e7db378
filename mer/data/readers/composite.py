"""The MEGC2019 composite in its shared preprocessed form.

Layout: ``ROOT/labels.csv`` with columns ``dataset,subject,sample,label`` and one image per
sample at ``ROOT/flows/{subject}_{sample}.png``: 28x28, 3 channels, 8 bits, channels (in the
file's RGB order) horizontal flow u, vertical flow v, optical strain, each min-max normalised
per image. Labels are ``negative``/``positive``/``surprise`` or ``0``/``1``/``2`` in that order.

Records carry the *source* data set (``casme2``, ``samm``, ``smic``; spellings such as
``CASME II`` or ``SMIC-HS`` normalised), so a by-data-set partition of the composite gives
one client per source. The images are decoded by :func:`decode_flow_png`: u, v to [-1, 1]
(x / 127.5 - 1) and strain to [0, 1] (x / 255). Min-max normalisation moves zero motion away
from the middle grey, so the sign of u, v is only approximate in these images.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

import cv2
import numpy as np

from mer.data.errors import DataError, ProblemLog
from mer.data.labels import LabelMap, normalise_label
from mer.data.records import SampleRecord

DEFAULT_MAP = "composite-3"
NATIVE_SIZE = 28
COLUMNS = ("dataset", "subject", "sample", "label")
_DATASETS = {
    "casmeii": "casme2",
    "casme2": "casme2",
    "samm": "samm",
    "smic": "smic",
    "smichs": "smic",
    "casme3": "casme3",
    "casmeiii": "casme3",
}


def dataset_name(text: str) -> str:
    key = re.sub(r"[^a-z0-9]", "", text.lower())
    return _DATASETS.get(key, key)


def decode_flow_png(path: Path, shown: str, expect: int | None = NATIVE_SIZE) -> np.ndarray:
    """(3, S, S) float32 from an 8-bit RGB flow PNG; DataError naming ``shown`` if it is wrong."""
    try:
        data = path.read_bytes()
    except OSError:
        raise DataError("flow image is missing or unreadable", file=shown) from None
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None:
        raise DataError("flow image is corrupt or not an image", file=shown)
    h, w = img.shape[:2]
    c = 1 if img.ndim == 2 else img.shape[2]
    want = f"{expect}x{expect}x3" if expect else "a square 3-channel"
    if c != 3 or h != w or (expect and h != expect) or img.dtype != np.uint8:
        bits = "8-bit" if img.dtype == np.uint8 else f"{img.dtype}"
        raise DataError(
            f"expected {'a ' if expect else ''}{want} 8-bit flow image (got {h}x{w}x{c} {bits})", file=shown
        )
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).astype(np.float32)
    out = np.empty((3, h, w), dtype=np.float32)
    out[0] = rgb[..., 0] / 127.5 - 1.0
    out[1] = rgb[..., 1] / 127.5 - 1.0
    out[2] = rgb[..., 2] / 255.0
    return out


def read(root: Path, *, label_map: LabelMap, log: ProblemLog, sheet: str | Path | None = None) -> list[SampleRecord]:
    path = Path(sheet) if sheet is not None else root / "labels.csv"
    if not path.is_file():
        raise DataError("labels.csv not found (expected ROOT/labels.csv and ROOT/flows/)", file=path)
    try:
        text = path.read_text("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read labels.csv ({exc})", file=path) from None
    reader = csv.DictReader(text.splitlines())
    header = [h.strip().lower() for h in (reader.fieldnames or [])]
    if not set(COLUMNS) <= set(header):
        raise DataError(f"expected columns {','.join(COLUMNS)} (got {','.join(header) or 'none'})", file=path.name)
    out: list[SampleRecord] = []
    for rownum, raw in enumerate(reader, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k}
        ref = f"{dataset_name(row['dataset'])}/{row['subject']}/{row['sample']}"
        try:
            out.append(_record(root, row, label_map, f"{path.name} row {rownum}"))
        except DataError as err:
            log.add(DataError(err.message, file=err.file or path.name, row=rownum), sample=ref)
    return out


def _record(root: Path, row: dict[str, str], label_map: LabelMap, source: str) -> SampleRecord:
    if not row["subject"] or not row["sample"]:
        raise DataError(f"empty subject or sample cell (got {row['subject']!r}, {row['sample']!r})")
    native = row["label"]
    if native.isdigit():
        idx = int(native)
        if not 0 <= idx < len(label_map.classes):
            raise DataError(
                f"numeric label must be in 0..{len(label_map.classes) - 1} "
                f"({', '.join(label_map.classes)}) (got {native})"
            )
        native = label_map.classes[idx]
    label = label_map.map(native)
    rel = f"flows/{row['subject']}_{row['sample']}.png"
    flow = root / rel
    decode_flow_png(flow, rel)  # validate now: size, channels, bit depth
    return SampleRecord(
        dataset=dataset_name(row["dataset"]),
        subject=row["subject"],
        sample_id=row["sample"],
        emotion=normalise_label(native),
        label=label,
        flow_image=flow,
        au_known=False,
        source=source,
    )
