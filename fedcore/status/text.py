"""The terminal view of a snapshot (``status``): the page's content as plain text."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any


def _num(value: Any, spec: str = ".3f") -> str:
    return "-" if not isinstance(value, (int, float)) or isinstance(value, bool) else format(value, spec)


def render_text(snap: Mapping[str, Any], *, source: str = "", running: int | None = None) -> str:
    """Plain text: the federation line, now, the clients, the rounds."""
    out = []
    age = time.time() - snap["updated"] if isinstance(snap.get("updated"), (int, float)) else None
    state = f"coordinator pid {running} running" if running else "coordinator NOT running"
    out.append(
        f"federation {snap.get('federation', '?')}  run {snap.get('run_id', '?')}  "
        f"aggregation {snap.get('aggregation', '?')}  strategy {snap.get('strategy', '?')}  ({state})"
    )
    if source:
        out.append(f"from {source}" + (f" (as of {age:.0f} s ago)" if age is not None else ""))
    stage = snap.get("stage")
    where = f"stage {stage} attempt {snap.get('attempt', 0)}" if stage else f"phase {snap.get('phase', '?')}"
    deadline = snap.get("stage_deadline_s")
    out.append(
        f"round {snap.get('round', '?')} of {snap.get('rounds', '?')} ({snap.get('completed', 0)} completed), "
        f"{snap.get('phase', '?')}: {where}"
        + (f", deadline in {deadline:.0f} s" if isinstance(deadline, (int, float)) else "")
    )
    if snap.get("stop_requested"):
        out.append(f"stop requested: {snap['stop_requested']} (ends after the current round)")
    if snap.get("outcome"):
        out.append(f"outcome: {snap['outcome']}")
    if snap.get("page"):
        out.append(
            f"status page: {snap['page']}  (Prometheus: {snap['page']}metrics)"
            if running
            else f"status page (while it ran): {snap['page']}"
        )
    clients = snap.get("clients") or []
    if "clients" in snap:
        out.append(
            f"clients: {sum(1 for c in clients if c.get('alive'))} alive of {len(clients)} joined "
            f"({snap.get('min_clients', '?')} needed)"
        )
    for c in clients:
        if c.get("dp"):
            budget = c.get("target_epsilon")
            eps = (
                f"epsilon {_num(c.get('epsilon'))} / {_num(budget, 'g') if budget else 'no budget'}"
                f" ({c.get('accountant') or '?'}, delta {_num(c.get('delta'), '.1e')})"
            )
        else:
            eps = "no DP report yet" if c.get("epsilon") is None else "DP off"
        part = f"excluded: {c['excluded']}" if c.get("excluded") else c.get("part", "")
        seen = c.get("last_seen_s")
        out.append(
            f"  {c['id']:<16} {'alive' if c.get('alive') else 'DEAD ':<5}  seen {_num(seen, '.1f')} s ago  "
            f"{part:<10}  {eps}"
        )
    rows = snap.get("history") or []
    out.append(
        f"{'round':>5} {'att':>3} {'clients':>7} {'UF1':>6} {'UAR':>6} {'acc':>6} {'eps max':>7} "
        f"{'seconds':>7} {'MB up':>7} {'MB down':>7}"
    )
    for r in rows:
        out.append(
            f"{r.get('round', '?'):>5} {r.get('attempt', 0):>3} {r.get('contributors', 0):>7} "
            f"{_num(r.get('uf1')):>6} {_num(r.get('uar')):>6} {_num(r.get('accuracy')):>6} "
            f"{_num(r.get('epsilon_max'), '.2f'):>7} {_num(r.get('seconds'), '.2f'):>7} "
            f"{(r.get('bytes_up') or 0) / 1e6:>7.2f} {(r.get('bytes_down') or 0) / 1e6:>7.2f}"
        )
    if not rows:
        out.append("  (no round completed yet)")
    return "\n".join(out)
