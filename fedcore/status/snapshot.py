"""One JSON-able picture of a running federation, taken from the round engine under its lock.

The snapshot holds what an operator watches, nothing a client sent in confidence: the phase,
round, stage and attempt; each client's liveness, its part in the open stage and the privacy it
reports having spent; one line per completed round (pooled evaluation metrics, bytes, seconds,
the largest epsilon). Times are seconds ago / seconds left (the engine's clock is monotonic),
plus ``updated``, the wall-clock time the snapshot was taken.

:func:`history_rows` also reads ``metrics.jsonl`` lines, so the page, ``/metrics`` and the
``status`` command show the same columns whether they read a live engine or a run folder.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from fedcore.coordinator.records import jsonable

if TYPE_CHECKING:
    from fedcore.coordinator.engine import RoundEngine

#: bumped when a key changes meaning
SCHEMA = 1
#: the pooled evaluation metrics shown per round (those a round reported)
EVAL_KEYS = ("uf1", "uar", "accuracy", "loss")


def history_rows(history: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The per-round columns of metrics.jsonl lines (the checkpoint's history)."""
    rows = []
    for line in history:
        ev = line.get("eval") or {}
        row = {
            "round": line.get("round"),
            "attempt": line.get("attempt", 0),
            "contributors": line.get("contributors", 0),
            "seconds": line.get("seconds", 0.0),
            "bytes_up": line.get("bytes_up", 0),
            "bytes_down": line.get("bytes_down", 0),
            "epsilon_max": line.get("epsilon_max"),
        }
        row.update({k: ev[k] for k in EVAL_KEYS if isinstance(ev.get(k), (int, float))})
        rows.append(row)
    return rows


def _client_part(cid: str, eng: RoundEngine) -> str:
    run = eng.state.stage
    info = eng.registry.clients[cid]
    if info.exhausted:
        return "excluded"
    if run is None or cid not in run.expected:
        return "idle"
    if cid in run.responded:
        return "answered"
    if cid in run.dropped:
        return "dropped"
    return "working"


def take(eng: RoundEngine, *, stop_request: str = "", page: str = "") -> dict[str, Any]:
    """The snapshot of ``eng`` now (the caller holds ``eng.lock``)."""
    now = eng.clock()
    st, fed = eng.state, eng.cfg.federation
    run = st.stage
    clients = []
    for cid in sorted(eng.registry.clients):
        info = eng.registry.clients[cid]
        p = eng.state.privacy.get(cid, {})
        clients.append(
            {
                "id": cid,
                "alive": info.alive,
                "last_seen_s": round(max(0.0, now - info.last_seen), 2),
                "part": _client_part(cid, eng),
                "excluded": info.exhausted or "",
                "dp": bool(p.get("enabled")),
                "epsilon": p.get("epsilon"),
                "target_epsilon": p.get("target_epsilon") or None,
                "delta": p.get("delta"),
                "accountant": p.get("accountant", ""),
                "exhausted": bool(p.get("exhausted")),
            }
        )
    rows = history_rows(eng.state.history)
    return jsonable(
        {
            "schema": SCHEMA,
            "updated": time.time(),
            "pid": os.getpid(),
            "federation": fed.id,
            "run_id": eng.run_id,
            "aggregation": fed.aggregation,
            "strategy": eng.cfg.strategy.name,
            "workload": fed.workload,
            "phase": st.phase.value,
            "round": st.round,
            "rounds": fed.rounds,
            "attempt": st.attempt,
            "completed": len(rows),
            "min_clients": fed.min_clients,
            "stage": run.stage.name if run is not None else None,
            "stage_deadline_s": round(max(0.0, run.deadline - now), 1) if run is not None else None,
            "round_seconds": round(now - st.tally.started, 2) if st.tally.started else None,
            "round_bytes_up": st.tally.bytes_up,
            "round_bytes_down": st.tally.bytes_down,
            "bytes_up": sum(r["bytes_up"] or 0 for r in rows),
            "bytes_down": sum(r["bytes_down"] or 0 for r in rows),
            "outcome": st.outcome,
            "stop_requested": stop_request,
            "page": page,
            "clients": clients,
            "history": rows,
        }
    )


def fingerprint(snap: Mapping[str, Any]) -> tuple:
    """What makes a snapshot news: the phase, round, stage, attempt, rounds done, who is alive and
    each client's part and epsilon (not the ages, which change every second)."""
    return (
        snap.get("phase"),
        snap.get("round"),
        snap.get("stage"),
        snap.get("attempt"),
        snap.get("completed"),
        snap.get("stop_requested"),
        snap.get("outcome"),
        tuple((c["id"], c["alive"], c["part"], c.get("epsilon")) for c in snap.get("clients", ())),
    )
