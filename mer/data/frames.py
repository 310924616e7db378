"""Frame files: numbering, reading and decoding.

Data sets name frames differently (``img46.jpg``, ``reg_img46.jpg``, ``006_05562.jpg``,
``image106720.bmp``, ``46.jpg``); all end in the frame number, so :func:`frame_index` maps the
trailing integer of each image file's stem to its path.
"""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np

from mer.data.errors import DataError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
_TRAILING_INT = re.compile(r"(\d+)$")


def frame_index(folder: Path) -> dict[int, Path]:
    """Frame number -> path for the image files in ``folder`` (sorted by number)."""
    out: dict[int, Path] = {}
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES or not p.is_file():
            continue
        m = _TRAILING_INT.search(p.stem)
        if m:
            out.setdefault(int(m.group(1)), p)
    return dict(sorted(out.items()))


def describe_range(index: dict[int, Path]) -> str:
    if not index:
        return "no frames"
    keys = list(index)
    return f"{len(keys)} frames numbered {keys[0]}..{keys[-1]}"


def read_bytes(path: Path, what: str = "frame") -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{what} file is missing", file=path) from None
    except OSError as exc:
        raise DataError(f"cannot read {what} file ({exc.strerror})", file=path) from None


def decode_gray(data: bytes, path: Path) -> np.ndarray:
    """Decode image bytes to a 2-D uint8 grayscale array; DataError naming ``path`` if corrupt."""
    if not data:
        raise DataError("frame file is empty", file=path)
    img = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise DataError(f"frame file is corrupt or not an image ({len(data)} bytes)", file=path)
    return img


def read_gray(path: Path) -> np.ndarray:
    return decode_gray(read_bytes(path), path)
