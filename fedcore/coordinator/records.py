"""What the coordinator writes under ``run_dir`` besides checkpoints.

- ``metrics.jsonl``: one JSON object per completed training round. It is derived from the
  checkpoint's history: after each checkpoint the new line is appended, and at start-up the file
  is rewritten (atomically) from the newest checkpoint, so a crash between the checkpoint and the
  append can neither lose nor repeat a round.
- ``summary.json``: written when the run ends (completed or aborted).
- ``attempt.json``: the last attempt started per round (``{"0": a0, "7": a7}``), so that a round
  that was in flight when the coordinator died is re-run as a new, higher attempt after restart.
- ``coordinator.address``: ``host:port`` actually bound (useful with port 0).
- ``run.id``: a random id made when the run folder is first used and kept across restarts; sent
  to clients in ``JoinReply.settings["run_id"]`` so they can key what they keep to this run.
"""

from __future__ import annotations

import json
import math
import secrets
from pathlib import Path
from typing import Any

import numpy as np

from fedcore.coordinator.checkpoint import atomic_write


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars/arrays, tuples, sets and non-finite floats made JSON-safe."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = sorted(value) if isinstance(value, (set, frozenset)) else value
        return [jsonable(v) for v in items]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    return str(value)


class RunRecords:
    def __init__(self, run_dir: Path):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.metrics_path = self.run_dir / "metrics.jsonl"
        self.summary_path = self.run_dir / "summary.json"
        self.attempt_path = self.run_dir / "attempt.json"
        self.address_path = self.run_dir / "coordinator.address"
        self.run_id_path = self.run_dir / "run.id"

    def run_id(self) -> str:
        """This run folder's id (made, durably, on first use)."""
        try:
            text = self.run_id_path.read_text().strip()
            if text:
                return text
        except FileNotFoundError:
            pass
        run_id = f"run-{secrets.token_hex(8)}"
        atomic_write(self.run_id_path, (run_id + "\n").encode())
        return run_id

    def sync_metrics(self, history: list[dict]) -> None:
        """Make metrics.jsonl hold exactly ``history`` (one line per completed round)."""
        text = "".join(json.dumps(line, sort_keys=True) + "\n" for line in history)
        atomic_write(self.metrics_path, text.encode())

    def append_metrics(self, line: dict) -> None:
        with open(self.metrics_path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line, sort_keys=True) + "\n")
            fh.flush()

    def _attempts(self) -> dict[str, int]:
        try:
            data = json.loads(self.attempt_path.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError):
            return {}

    def next_attempt(self, round_: int) -> int:
        """The attempt number to use for ``round_``: one more than any used before for it."""
        last = self._attempts().get(str(round_))
        return 0 if last is None else last + 1

    def save_attempt(self, round_: int, attempt: int) -> None:
        """Remember the attempt started for ``round_`` (round 0 and the two newest rounds kept)."""
        data = self._attempts()
        data[str(round_)] = attempt
        keep = {"0"} | set(sorted((k for k in data if k != "0"), key=int)[-2:])
        atomic_write(self.attempt_path, json.dumps({k: data[k] for k in sorted(keep & set(data), key=int)}).encode())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary_path, (json.dumps(jsonable(summary), indent=2, sort_keys=True) + "\n").encode())

    def write_address(self, address: str) -> None:
        atomic_write(self.address_path, (address + "\n").encode())


def summarize(
    history: list[dict],
    *,
    federation: str,
    aggregation: str,
    strategy: str,
    rounds_planned: int,
    status: str,
    reason: str,
    clients: list[str],
    round0: dict,
    privacy: dict[str, dict],
) -> dict:
    """summary.json: totals over the history, the last evaluation and the privacy spent."""
    final_eval: dict[str, Any] = next((h["eval"] for h in reversed(history) if h.get("eval")), {})
    eps = {c: p.get("epsilon", 0.0) for c, p in privacy.items() if p.get("enabled")}
    summary = {
        "federation": federation,
        "status": status,
        "reason": reason,
        "rounds": len(history),
        "rounds_planned": rounds_planned,
        "aggregation": aggregation,
        "strategy": strategy,
        "seconds": round(sum(h.get("seconds", 0.0) for h in history) + round0.get("seconds", 0.0), 3),
        "bytes_up": sum(h.get("bytes_up", 0) for h in history) + round0.get("bytes_up", 0),
        "bytes_down": sum(h.get("bytes_down", 0) for h in history) + round0.get("bytes_down", 0),
        "final": final_eval,
        "epsilon": eps,
        "epsilon_max": max(eps.values()) if eps else None,
        "clients": sorted(clients),
    }
    for key in ("accuracy", "uf1", "uar", "loss"):
        if key in final_eval:
            summary[key] = final_eval[key]
    return summary
