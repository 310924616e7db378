"""The simulation's progress bar and closing table (kept apart from the process handling)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm


class RoundBar:
    """A tqdm bar over rounds with the last round's metrics as its postfix."""

    def __init__(self, rounds: int, enabled: bool):
        self.bar = tqdm(total=rounds, unit="round", desc="federation", disable=not enabled, file=sys.stderr)

    def update_round(self, line: dict[str, Any]) -> None:
        ev = line.get("eval") or {}
        post = {"round": line.get("round"), "clients": line.get("contributors")}
        for key in ("accuracy", "uf1", "uar"):
            if key in ev:
                post[key] = f"{ev[key]:.3f}"
        if line.get("epsilon_max") is not None:
            post["eps"] = f"{line['epsilon_max']:.2f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def progress_bar(rounds: int, enabled: bool | None) -> RoundBar:
    return RoundBar(rounds, sys.stderr.isatty() if enabled is None else enabled)


def _mean_loss(train: dict[str, dict[str, float]]) -> str:
    losses = [m["loss"] for m in train.values() if "loss" in m]
    return f"{sum(losses) / len(losses):.4f}" if losses else "-"


def _fmt(value: Any, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def closing_table(metrics: list[dict[str, Any]], summary: dict[str, Any], run_dir: Path) -> str:
    """A plain-text table: one row per round, then the totals from summary.json."""
    head = (
        f"{'round':>5} {'att':>3} {'clients':>7} {'train loss':>10} {'accuracy':>8} {'UF1':>6} {'UAR':>6} "
        f"{'eps max':>7} {'seconds':>7} {'MB up':>7} {'MB down':>7}"
    )
    rows = [head, "-" * len(head)]
    for m in metrics:
        ev = m.get("eval") or {}
        rows.append(
            f"{m['round']:>5} {m.get('attempt', 0):>3} {m.get('contributors', 0):>7} "
            f"{_mean_loss(m.get('train', {})):>10} {_fmt(ev.get('accuracy')):>8} {_fmt(ev.get('uf1'), '.3f'):>6} "
            f"{_fmt(ev.get('uar'), '.3f'):>6} {_fmt(m.get('epsilon_max'), '.2f'):>7} "
            f"{m.get('seconds', 0):>7.2f} {m.get('bytes_up', 0) / 1e6:>7.2f} {m.get('bytes_down', 0) / 1e6:>7.2f}"
        )
    status = summary.get("status", "no summary (the coordinator did not finish)")
    rows.append("-" * len(head))
    rows.append(
        f"{status}: {summary.get('rounds', len(metrics))}/{summary.get('rounds_planned', '?')} rounds, "
        f"aggregation {summary.get('aggregation', '?')}, {summary.get('seconds', 0):.1f} s, "
        f"{summary.get('bytes_up', 0) / 1e6:.2f} MB up, {summary.get('bytes_down', 0) / 1e6:.2f} MB down"
        + (f"; reason: {summary['reason']}" if summary.get("status") == "aborted" else "")
    )
    rows.append(f"run folder: {run_dir}")
    return "\n".join(rows)
