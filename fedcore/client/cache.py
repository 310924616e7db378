"""The client's cache of local training results, for resending within the *same* attempt only.

An entry is keyed by (federation id, run id, round, attempt, SHA-256 of the global model). It is
reused only when all five match: a resend inside one attempt (a dropped upload retried, the
client restarted while that attempt is still open), which contributes to the same aggregate.
A new attempt of a round -- after a coordinator restart or a failed attempt -- never matches: the
client trains again with fresh noise (charged to its ledger), because contributing the same
update to two different aggregates lets whoever sees both sums subtract them and recover it.

Entries live on disk under ``workdir/cache`` (``.npy`` written with ``allow_pickle=False`` plus a
JSON sidecar, both written atomically), so they survive a restart of the client; only the newest
``keep`` rounds are kept. Their presence is also evidence that this workdir trained before
(:mod:`fedcore.dp.ledger_guard`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedcore.common.workload import FitResult, PrivacyState

log = logging.getLogger(__name__)
_NAME = re.compile(r"^r(\d{6,})-([0-9a-f]{16})\.json$")


class UpdateCache:
    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def _stem(self, round_: int, model_sha256: bytes, attempt: int, federation: str, run: str) -> Path:
        tag = hashlib.sha256(json.dumps([federation, run, int(attempt), model_sha256.hex()]).encode()).hexdigest()
        return self.directory / f"r{round_:06d}-{tag[:16]}"

    def get(
        self, round_: int, model_sha256: bytes, size: int, *, attempt: int, federation: str = "", run: str = ""
    ) -> FitResult | None:
        """The result trained for exactly this (federation, run, round, attempt, model), or None."""
        stem = self._stem(round_, model_sha256, attempt, federation, run)
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            want = {
                "model_sha256": model_sha256.hex(),
                "attempt": int(attempt),
                "federation": federation,
                "run": run,
                "round": round_,
            }
            if any(meta.get(k) != v for k, v in want.items()):
                return None
            params = np.load(stem.with_suffix(".npy"), allow_pickle=False)
        except (OSError, ValueError) as exc:
            if stem.with_suffix(".json").exists():
                log.warning("ignoring unreadable cache entry %s: %s", stem, exc)
            return None
        if params.dtype != np.float32 or params.shape != (size,):
            log.warning(
                "ignoring cache entry %s: expected float32 (%d,), found %s %s", stem, size, params.dtype, params.shape
            )
            return None
        privacy = PrivacyState(**meta["privacy"]) if meta.get("privacy") else None
        return FitResult(params, int(meta["num_examples"]), dict(meta["metrics"]), privacy)

    def put(
        self, round_: int, model_sha256: bytes, result: FitResult, *, attempt: int, federation: str = "", run: str = ""
    ) -> None:
        stem = self._stem(round_, model_sha256, attempt, federation, run)
        tmp = stem.with_name(stem.name + ".tmp.npy")
        np.save(tmp, np.asarray(result.parameters, np.float32), allow_pickle=False)
        os.replace(tmp, stem.with_suffix(".npy"))
        meta = {
            "round": round_,
            "attempt": int(attempt),
            "federation": federation,
            "run": run,
            "model_sha256": model_sha256.hex(),
            "num_examples": int(result.num_examples),
            "metrics": {k: float(v) for k, v in result.metrics.items()},
            "privacy": asdict(result.privacy) if result.privacy else None,
        }
        tmp_json = stem.with_name(stem.name + ".tmp.json")
        tmp_json.write_text(json.dumps(meta))
        os.replace(tmp_json, stem.with_suffix(".json"))
        self._prune()

    def _prune(self) -> None:
        entries = sorted((int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))
        rounds = sorted({r for r, _ in entries})
        for r, path in entries:
            if r not in rounds[-self.keep :]:
                path.unlink(missing_ok=True)
                path.with_suffix(".npy").unlink(missing_ok=True)
