"""A disk cache of flow images keyed by a content hash.

The key is SHA-256 over the bytes of the onset and apex frame files, the flow method, the
output size and the alignment parameters (landmark backend, crop size, template eyes) plus a
format version, so a changed frame or setting never returns a stale entry and a renamed or
moved data set still hits. Entries are ``.npy`` files (float32, loaded with
``allow_pickle=False``), written to a temporary name and renamed into place, so a crash never
leaves half an entry. An unreadable or mis-shaped entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

#: part of every key; bump it whenever flow parameters, strain or normalisation code change
CACHE_VERSION = "fedpsyau-flow-v1"


def content_key(*parts: bytes | str) -> str:
    """SHA-256 hex digest over length-prefixed parts (so part boundaries cannot shift)."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    for part in parts:
        b = part.encode() if isinstance(part, str) else bytes(part)
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


class FlowCache:
    """Directory of cached arrays; counts hits, misses and writes."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.hits = 0
        self.misses = 0
        self.writes = 0

    def _path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        path = self._path(key)
        if not path.exists():
            self.misses += 1
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            log.warning("flow cache entry %s is unreadable (%s); recomputing", path, exc)
            self.misses += 1
            return None
        if arr.dtype != np.float32 or (shape is not None and arr.shape != tuple(shape)):
            log.warning(
                "flow cache entry %s has %s %s, expected float32 %s; recomputing", path, arr.dtype, arr.shape, shape
            )
            self.misses += 1
            return None
        self.hits += 1
        return arr

    def put(self, key: str, arr: np.ndarray) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, np.ascontiguousarray(arr, dtype=np.float32), allow_pickle=False)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self.writes += 1

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "writes": self.writes}
