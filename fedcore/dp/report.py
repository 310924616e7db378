"""Per-client privacy report of a federated run, from the coordinator's ``metrics.jsonl``.

Each line of ``RUN_DIR/metrics.jsonl`` is a JSON object. Lines that carry privacy look like::

    {"round": 3, "epsilon_max": 2.41,
     "privacy": {"clinic-a": {"epsilon": 2.41, "delta": 1e-05, "accountant": "rdp", "steps": 24,
                              "noise_multiplier": 1.79, "exhausted": false}, ...}, ...}

Other lines (no ``privacy`` key: the coordinator leaves it and ``epsilon_max`` out of rounds in
which no client ran DP-SGD) are skipped. :func:`privacy_report` returns one
:class:`PrivacyRow` per client (its latest state) and writes ``RUN_DIR/report/epsilon.png``
(epsilon per round per client, with the federation maximum). Malformed input raises
:class:`ReportError` naming the file, line and field.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, TypeGuard

__all__ = [
    "PrivacyHistory",
    "PrivacyRow",
    "ReportError",
    "format_table",
    "plot_epsilon",
    "privacy_report",
    "read_privacy_history",
]

_CLIENT_FIELDS: dict[str, tuple[type, ...]] = {
    "epsilon": (int, float),
    "delta": (int, float),
    "accountant": (str,),
    "steps": (int,),
    "noise_multiplier": (int, float),
    "exhausted": (bool,),
}


class ReportError(ValueError):
    """The run directory or its metrics.jsonl is missing or malformed."""


@dataclass(frozen=True)
class PrivacyRow:
    """A client's latest privacy state in the run."""

    client: str
    epsilon: float
    delta: float
    accountant: str
    steps: int
    noise_multiplier: float
    rounds_trained: int  # rounds in which the client's epsilon (or, if reported, step count) grew
    last_round: int
    status: str  # "exhausted", "active" (in the last round) or "absent since round N"


@dataclass
class PrivacyHistory:
    """Epsilon per round per client, and the federation maximum."""

    rounds: list[int] = field(default_factory=list)
    epsilon_max: list[float] = field(default_factory=list)
    clients: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)


def _is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _check_client(entry: Any, where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise ReportError(f"{where}: expected an object with {', '.join(_CLIENT_FIELDS)} (got {type(entry).__name__})")
    for name, types in _CLIENT_FIELDS.items():
        if name not in entry:
            raise ReportError(f"{where}: missing field {name!r}")
        value = entry[name]
        ok = isinstance(value, types) and (bool in types or not isinstance(value, bool))
        if ok and types != (str,) and types != (bool,):
            ok = _is_number(value) and value >= 0
        if not ok:
            kind = "/".join(t.__name__ for t in types)
            raise ReportError(f"{where}: field {name!r} must be {kind} (non-negative) (got {value!r})")
    return entry


def read_privacy_history(run_dir: str | os.PathLike) -> PrivacyHistory:
    """Parse and validate the privacy records of ``RUN_DIR/metrics.jsonl``."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ReportError(f"run directory {run} does not exist or is not a directory")
    metrics = run / "metrics.jsonl"
    if not metrics.is_file():
        raise ReportError(f"{run} has no metrics.jsonl (expected the coordinator's per-round log at {metrics})")
    history = PrivacyHistory()
    try:
        lines = metrics.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"cannot read {metrics}: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{metrics} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ReportError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(record, dict):
            raise ReportError(f"{where}: expected a JSON object (got {type(record).__name__})")
        if "privacy" not in record:
            continue
        rnd, privacy, eps_max = record.get("round"), record["privacy"], record.get("epsilon_max")
        if not isinstance(rnd, int) or isinstance(rnd, bool) or rnd < 0:
            raise ReportError(f"{where}: field 'round' must be an integer >= 0 (got {rnd!r})")
        if not isinstance(privacy, dict):
            raise ReportError(f"{where}: field 'privacy' must be an object of client id -> record")
        if not _is_number(eps_max):
            raise ReportError(f"{where}: field 'epsilon_max' must be a number (got {eps_max!r})")
        if history.rounds and rnd <= history.rounds[-1]:
            raise ReportError(f"{where}: round {rnd} does not follow round {history.rounds[-1]}")
        history.rounds.append(rnd)
        history.epsilon_max.append(float(eps_max))
        for client, entry in privacy.items():
            checked = _check_client(entry, f"{where}: privacy[{client!r}]")
            history.clients.setdefault(str(client), []).append((rnd, checked))
    if not history.rounds:
        raise ReportError(f"{metrics} has no record with a 'privacy' field (was the federation run with DP?)")
    return history


def _row(client: str, records: list[tuple[int, dict[str, Any]]], last_round: int) -> PrivacyRow:
    # clients report steps = 0 unless they opt in (report_steps): a growing epsilon marks a trained round
    trained, previous, previous_eps = 0, 0, 0.0
    for _, rec in records:
        if rec["steps"] > previous or rec["epsilon"] > previous_eps * (1 + 1e-12):
            trained += 1
        previous, previous_eps = rec["steps"], rec["epsilon"]
    rnd, latest = records[-1]
    if latest["exhausted"]:
        status = "exhausted"
    elif rnd == last_round:
        status = "active"
    else:
        status = f"absent since round {rnd + 1}"
    return PrivacyRow(
        client,
        float(latest["epsilon"]),
        float(latest["delta"]),
        latest["accountant"],
        latest["steps"],
        float(latest["noise_multiplier"]),
        trained,
        rnd,
        status,
    )


def privacy_report(
    run_dir: str | os.PathLike, *, write_png: bool = True, stream: TextIO | None = None
) -> list[PrivacyRow]:
    """Rows (one per client, sorted by id); writes ``RUN_DIR/report/epsilon.png`` if ``write_png``.

    Args:
        run_dir: the coordinator's run directory.
        write_png: also draw the epsilon-per-round plot.
        stream: if given, the table is printed there.
    """
    history = read_privacy_history(run_dir)
    last = history.rounds[-1]
    rows = [_row(c, recs, last) for c, recs in sorted(history.clients.items())]
    if write_png:
        plot_epsilon(history, Path(run_dir) / "report" / "epsilon.png")
    if stream is not None:
        print(format_table(rows), file=stream)
        for line in release_lines(run_dir):
            print(line, file=stream)
    return rows


def release_lines(run_dir: str | os.PathLike) -> list[str]:
    """What the run's releases were charged, beside the table: the coordinator's record of the
    round-0 statistics release (``summary.json`` ``stats_dp``, SecAgg+'s distributed noise) and,
    where the clients' ledgers sit under the run folder (``fedpsyau simulate``), each client's
    charges by kind. In a real federation each institution reads its own ledger
    (``fedpsyau privacy report LEDGER.json`` lists every charge)."""
    from .ledger import LedgerError, PrivacyLedger

    run, out = Path(run_dir), []
    try:
        stats = json.loads((run / "summary.json").read_text()).get("stats_dp")
    except (OSError, ValueError, AttributeError):
        stats = None
    if isinstance(stats, dict) and _is_number(stats.get("epsilon")):
        out.append(
            f"round-0 statistics release: distributed discrete Gaussian, epsilon {stats['epsilon']:.3f} alone "
            f"at delta {stats.get('delta', 0):.2g} by the coordinator's RDP record (L2 sensitivity "
            f"{stats.get('sensitivity', float('nan')):.3g}); each client's epsilon above includes it as "
            f"its ledger charged it"
        )
    for path in sorted(run.glob("federation/clients/*/work/privacy_ledger.json")):
        try:
            ledger = PrivacyLedger.load(path)
        except LedgerError as exc:
            out.append(f"{path.parent.parent.name}: ledger unreadable ({exc})")
            continue
        kinds: dict[str, int] = {}
        for c in ledger.charges:
            kinds[c.key.kind] = kinds.get(c.key.kind, 0) + 1
        what = ", ".join(f"{n} {kind} charge{'s' if n != 1 else ''}" for kind, n in kinds.items()) or "no charges"
        out.append(f"{path.parent.parent.name} ledger: {what}; epsilon {ledger.spent():.3f}")
    return out


def format_table(rows: list[PrivacyRow]) -> str:
    """A plain-text table: client, epsilon, delta, accountant, steps, rounds trained, status.

    Steps show as "local" when the client kept them to itself (``report_steps`` off: they reveal n).
    """
    header = ("client", "epsilon", "delta", "accountant", "steps", "rounds trained", "status")
    body = [
        (
            r.client,
            f"{r.epsilon:.3f}",
            f"{r.delta:.2g}",
            r.accountant,
            str(r.steps) if r.steps else "local",
            str(r.rounds_trained),
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths, strict=True)) for b in body]
    return "\n".join(line.rstrip() for line in lines)


def plot_epsilon(history: PrivacyHistory, path: str | os.PathLike) -> Path:
    """Draw epsilon per round per client (and the maximum, dashed) to a PNG; returns its path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(7, 4.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for client, records in sorted(history.clients.items()):
        rounds = [r for r, _ in records]
        (line,) = ax.plot(rounds, [rec["epsilon"] for _, rec in records], marker="o", markersize=3, label=client)
        stops = [(r, rec["epsilon"]) for r, rec in records if rec["exhausted"]]
        if stops:
            ax.plot(*stops[0], marker="X", markersize=9, color=line.get_color())
    ax.plot(history.rounds, history.epsilon_max, linestyle="--", color="black", linewidth=1, label="federation max")
    accountants = sorted({rec["accountant"] for recs in history.clients.values() for _, rec in recs})
    deltas = sorted({rec["delta"] for recs in history.clients.values() for _, rec in recs})
    ax.set_xlabel("round")
    ax.set_ylabel("cumulative epsilon")
    ax.set_title(
        f"Sample-level epsilon per client ({'/'.join(accountants)}, delta {', '.join(f'{d:.2g}' for d in deltas)})"
        "\nX = budget exhausted",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
