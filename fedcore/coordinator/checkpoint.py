"""The coordinator's checkpoints: one self-verifying ``.npz`` file per round, written atomically.

Layout of ``directory``::

    round-000007.npz     one checkpoint (np.savez, no pickle)
    round-000008.npz
    LATEST               "round-000008.npz\\n": the newest checkpoint written, for people and tools
    .round-000009.npz.<random>.tmp   a write in progress (or one a crash left behind; ignored)

Members of a checkpoint file:

- ``params``: float32 (P,) global model; ``statistics``: the numeric (S,) vector, when present;
- ``strategy.<key>``: each numpy-array entry of the strategy's state;
- ``meta``: uint8 array of UTF-8 JSON with ``format``, ``round``, ``spec`` (tensor name, shape,
  dtype), ``history``, ``extra``, the strategy state's numbers and the names of its arrays;
- ``sha256``: uint8 (32,) digest over every other member (name, dtype, shape and bytes, in name
  order), so a file that unzips but was altered is refused too.

Writing: the file is built in memory, written to a temp file in the same directory (O_EXCL),
flushed and fsynced, moved into place with ``os.replace`` and the directory fsynced; then
``LATEST`` is replaced the same way, and old checkpoints beyond ``keep`` are deleted. A crash at
any point leaves either the old or the new file complete, never a half-written one under a
checkpoint name.

Reading: :meth:`CheckpointStore.load_latest` tries the checkpoints from the highest round down
and returns the first that loads and verifies; a corrupt or truncated file is skipped with a
warning. The directory listing is the source of truth (a crash between the rename and the
``LATEST`` update leaves a complete newer checkpoint, and that one is used).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.common.errors import FedError
from fedcore.common.params import ParamSpec, TensorSpec

log = logging.getLogger(__name__)

FORMAT = "fedpsyau-checkpoint/1"
_NAME = re.compile(r"^round-(\d{6,})\.npz$")
_TMP = re.compile(r"^\.round-\d{6,}\.npz\.[0-9a-f]+\.tmp$")
_STRATEGY = "strategy."


class CheckpointError(FedError):
    """A checkpoint file cannot be read: truncated, altered, not a checkpoint, or a bad field."""


@dataclass
class Checkpoint:
    """The coordinator's state after a completed round."""

    round: int
    params: np.ndarray  # (P,) float32 global model
    spec: ParamSpec
    strategy_state: dict[str, Any] = field(default_factory=dict)  # Strategy.state_dict()
    history: list[dict] = field(default_factory=list)  # JSON-able metrics per round
    statistics: np.ndarray | None = None  # (S,) summed round-0 statistics, if any
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-able


def _json_bytes(obj: Any, what: str) -> np.ndarray:
    try:
        text = json.dumps(obj, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint {what} must be JSON-serialisable: {exc}") from None
    return np.frombuffer(text.encode("utf-8"), dtype=np.uint8)


def _digest(arrays: Mapping[str, np.ndarray]) -> np.ndarray:
    """SHA-256 over (name, dtype, shape, bytes) of every member, in name order."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        header = json.dumps([name, a.dtype.str, list(a.shape)]).encode()
        h.update(len(header).to_bytes(4, "little") + header)
        h.update(a.nbytes.to_bytes(8, "little"))
        h.update(a.tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8)


def encode(ckpt: Checkpoint) -> bytes:
    """The bytes of a checkpoint file (an uncompressed npz). Raises ValueError for a bad field."""
    if isinstance(ckpt.round, bool) or not isinstance(ckpt.round, int | np.integer) or ckpt.round < 0:
        raise ValueError(f"checkpoint round must be a non-negative integer (got {ckpt.round!r})")
    params = np.asarray(ckpt.params)
    if params.shape != (ckpt.spec.size,):
        raise ValueError(f"checkpoint params must have shape ({ckpt.spec.size},) for its spec (got {params.shape})")
    arrays: dict[str, np.ndarray] = {"params": params.astype("<f4")}
    if ckpt.statistics is not None:
        stats = np.asarray(ckpt.statistics)
        if stats.dtype.kind not in "biuf":
            raise ValueError(f"checkpoint statistics must be a numeric array (got dtype {stats.dtype})")
        arrays["statistics"] = stats
    numbers: dict[str, int | float] = {}
    array_keys: list[str] = []
    for key, value in ckpt.strategy_state.items():
        if isinstance(value, bool | int | float | np.integer | np.floating) and not isinstance(value, np.ndarray):
            numbers[key] = value.item() if isinstance(value, np.generic) else value
        elif isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
            arrays[_STRATEGY + key] = value
            array_keys.append(key)
        else:
            raise ValueError(
                f"strategy state {key!r} must be a number or a numeric numpy array (got {type(value).__name__})"
            )
    meta = {
        "format": FORMAT,
        "round": int(ckpt.round),
        "spec": [[t.name, list(t.shape), t.dtype] for t in ckpt.spec.tensors],
        "history": ckpt.history,
        "extra": ckpt.extra,
        "strategy_numbers": numbers,
        "strategy_arrays": sorted(array_keys),
    }
    arrays["meta"] = _json_bytes(meta, "history/extra/strategy state")
    arrays["sha256"] = _digest(arrays)
    buf = io.BytesIO()
    np.savez(buf, allow_pickle=False, **arrays)
    return buf.getvalue()


def decode(path: Path) -> Checkpoint:
    """Read and verify one checkpoint file; any problem becomes :class:`CheckpointError`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in z.files}
    # A damaged file can fail in many layers (zip directory, CRC, npy header, truncated data, an
    # absurd shape -> MemoryError); each means "unreadable", and load_latest must not raise for it.
    except Exception as exc:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable npz ({type(exc).__name__}: {exc})") from None
    stored = arrays.pop("sha256", None)
    if stored is None or not np.array_equal(stored, _digest(arrays)):
        raise CheckpointError(f"{path}: SHA-256 of the contents does not match the stored digest")
    try:
        meta = json.loads(arrays["meta"].tobytes().decode("utf-8"))
        if meta.get("format") != FORMAT:
            raise CheckpointError(f"{path}: expected format {FORMAT!r} (got {meta.get('format')!r})")
        spec = ParamSpec(tuple(TensorSpec(str(n), tuple(int(d) for d in s), str(dt)) for n, s, dt in meta["spec"]))
        params = arrays["params"].astype(np.float32)
        if params.shape != (spec.size,):
            raise CheckpointError(f"{path}: params have shape {params.shape}, the spec needs ({spec.size},)")
        state: dict[str, Any] = dict(meta["strategy_numbers"])
        for key in meta["strategy_arrays"]:
            state[key] = arrays[_STRATEGY + key]
        stats = arrays.get("statistics")
        return Checkpoint(
            round=int(meta["round"]),
            params=params,
            spec=spec,
            strategy_state=state,
            history=list(meta["history"]),
            statistics=stats,
            extra=dict(meta["extra"]),
        )
    except CheckpointError:
        raise
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: malformed checkpoint ({type(exc).__name__}: {exc})") from None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


class CheckpointStore:
    """Atomic, self-verifying checkpoints in ``directory``, keeping the newest ``keep``."""

    def __init__(self, directory: Path, keep: int = 3):
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
            raise ValueError(f"keep must be an integer >= 1 (got {keep!r})")
        self.directory = Path(directory)
        self.keep = keep
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, round: int) -> Path:
        return self.directory / f"round-{round:06d}.npz"

    def rounds(self) -> list[int]:
        """Rounds that have a checkpoint file (verified or not), newest first."""
        found = [int(m.group(1)) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found, reverse=True)

    def save(self, ckpt: Checkpoint) -> Path:
        """Write ``ckpt`` atomically, point ``LATEST`` at it, prune, and return its path.

        Files of later rounds than ``ckpt.round`` are deleted: the coordinator only saves round r
        after resuming from the newest checkpoint that verified, so those files are corrupt
        leftovers of an abandoned run.
        """
        data = encode(ckpt)
        path = self.path_for(int(ckpt.round))
        atomic_write(path, data)
        atomic_write(self.directory / "LATEST", (path.name + "\n").encode())
        self._prune(int(ckpt.round))
        return path

    def _prune(self, current: int) -> None:
        kept = 0
        for r in self.rounds():
            if r > current:
                log.warning(
                    "removing checkpoint %s: newer than the round just saved (%d), so it "
                    "failed to load when the coordinator resumed",
                    self.path_for(r),
                    current,
                )
                self.path_for(r).unlink(missing_ok=True)
            elif kept < self.keep:
                kept += 1
            else:
                self.path_for(r).unlink(missing_ok=True)
        for p in self.directory.iterdir():
            if _TMP.match(p.name):
                log.warning("removing %s left by an interrupted checkpoint write", p)
                p.unlink(missing_ok=True)

    def load(self, round: int) -> Checkpoint:
        """Load and verify the checkpoint of ``round``; raises :class:`CheckpointError`."""
        ckpt = decode(self.path_for(round))
        if ckpt.round != round:
            raise CheckpointError(f"{self.path_for(round)}: holds round {ckpt.round}, its name says {round}")
        return ckpt

    def load_latest(self) -> Checkpoint | None:
        """The newest checkpoint that loads and verifies, or None when there is none.

        Corrupt or truncated files are skipped with a logged warning; this never raises for one.
        """
        for r in self.rounds():
            try:
                return self.load(r)
            except CheckpointError as exc:
                log.warning("skipping checkpoint of round %d: %s", r, exc)
            except OSError as exc:
                log.warning("skipping checkpoint of round %d: cannot read it (%s)", r, exc)
        return None
