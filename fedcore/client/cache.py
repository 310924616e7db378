"""The client's cache of local training results, keyed by (round, SHA-256 of the global model).

A retried attempt of the same round with the same global model (a straggler retry, a restarted
coordinator) reuses the cached result instead of training again -- which would spend privacy
budget a second time. Entries live on disk under ``workdir/cache`` (``.npy`` written with
``allow_pickle=False`` plus a JSON sidecar, both written atomically), so they also survive a
restart of the client; only the newest ``keep`` rounds are kept.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np

from fedcore.client.trainer import FitResult, PrivacyState

log = logging.getLogger(__name__)
_NAME = re.compile(r"^r(\d{6,})-([0-9a-f]{16})\.json$")


class UpdateCache:
    def __init__(self, directory: Path, keep: int = 2):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.keep = keep

    def _stem(self, round_: int, model_sha256: bytes) -> Path:
        return self.directory / f"r{round_:06d}-{model_sha256.hex()[:16]}"

    def get(self, round_: int, model_sha256: bytes, size: int) -> FitResult | None:
        stem = self._stem(round_, model_sha256)
        try:
            meta = json.loads(stem.with_suffix(".json").read_text())
            if meta.get("model_sha256") != model_sha256.hex():
                return None
            params = np.load(stem.with_suffix(".npy"), allow_pickle=False)
        except (OSError, ValueError) as exc:
            if stem.with_suffix(".json").exists():
                log.warning("ignoring unreadable cache entry %s: %s", stem, exc)
            return None
        if params.dtype != np.float32 or params.shape != (size,):
            log.warning("ignoring cache entry %s: expected float32 (%d,), found %s %s", stem, size, params.dtype,
                        params.shape)
            return None
        privacy = PrivacyState(**meta["privacy"]) if meta.get("privacy") else None
        return FitResult(params, int(meta["num_examples"]), dict(meta["metrics"]), privacy)

    def put(self, round_: int, model_sha256: bytes, result: FitResult) -> None:
        stem = self._stem(round_, model_sha256)
        tmp = stem.with_name(stem.name + ".tmp.npy")
        np.save(tmp, np.asarray(result.parameters, np.float32), allow_pickle=False)
        os.replace(tmp, stem.with_suffix(".npy"))
        meta = {"round": round_, "model_sha256": model_sha256.hex(), "num_examples": int(result.num_examples),
                "metrics": {k: float(v) for k, v in result.metrics.items()},
                "privacy": asdict(result.privacy) if result.privacy else None}
        tmp_json = stem.with_name(stem.name + ".tmp.json")
        tmp_json.write_text(json.dumps(meta))
        os.replace(tmp_json, stem.with_suffix(".json"))
        self._prune()

    def _prune(self) -> None:
        entries = sorted((int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name)))
        rounds = sorted({r for r, _ in entries})
        for r, path in entries:
            if r not in rounds[-self.keep:]:
                path.unlink(missing_ok=True)
                path.with_suffix(".npy").unlink(missing_ok=True)
