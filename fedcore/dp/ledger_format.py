"""The privacy ledger's file format: versioned JSON, parsed and checked field by field (never pickle).

Version 2 (written by this code)::

    {"version": 2, "accountant": "prv", "delta": 1e-05, "target_epsilon": 8.0,
     "budget": {"id": "3f2a...", "started": "2026-12-03T08:00:00+00:00", "reason": "created"},
     "charges": [                                   # append-only: never replaced, never removed
        {"federation": "fedpsyau", "run": "r-6c1d", "round": 0, "attempt": 0, "kind": "statistics",
         "sample_rate": 1.0, "noise_multiplier": 2.5, "steps": 1, "time": "..."},
        {"federation": "fedpsyau", "run": "r-6c1d", "round": 1, "attempt": 0, "kind": "dp-sgd",
         "sample_rate": 0.125, "noise_multiplier": 1.79, "steps": 8, "time": "..."}, ...],
     "archived": [{"id": "...", "started": "...", "ended": "...", "reason": "...", "charges": [...]}],
     "epsilon": 0.91}                               # informational; always recomputed

A charge is keyed by (federation id, run id, round, attempt, kind). Keys label charges; they do
not deduplicate them: two charges with one key both count (the conservative reading of "that
output may have left twice"). ``archived`` keeps the charges of budgets an operator closed with
``fedpsyau privacy new-budget``; they no longer count, but nothing is deleted.

Version 1 (round-keyed, where a re-charged round *replaced* its earlier charge) is migrated on
load: its charges become v2 charges with ``federation = "?"``, ``run = "v1"``, ``attempt = None``.
A v1 file may already have forgotten re-run attempts (the replacement bug), so a migrated ledger
can under-count; :func:`parse` reports that in ``notes`` and the ledger logs it as a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeGuard

from .accounting import Segment

__all__ = ["KINDS", "LEDGER_VERSION", "Charge", "ChargeKey", "LedgerError", "ParsedLedger", "now", "parse"]

LEDGER_VERSION = 2
#: What a charge pays for: DP-SGD steps, or one Gaussian-mechanism release of statistics.
KINDS: tuple[str, ...] = ("dp-sgd", "statistics")


class LedgerError(ValueError):
    """A ledger file is missing a field, has a wrong value, cannot be parsed, or cannot be trusted."""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class ChargeKey:
    """Which released output a charge pays for: (federation, run, round, attempt, kind)."""

    federation: str = "?"
    run: str = "?"
    round: int = 0
    attempt: int | None = None
    kind: str = "dp-sgd"

    @classmethod
    def from_task(cls, config: Any, round: int, kind: str = "dp-sgd") -> ChargeKey:
        """The key of the task the client daemon describes in ``config["task"]`` (see handlers).

        ``config["task"] = {"federation": ..., "run": ..., "round": ..., "attempt": ...}``; missing
        parts become ``"?"`` / ``None`` (the charge still counts; only its label is vaguer).
        """
        task = config.get("task") if hasattr(config, "get") else None
        task = task if isinstance(task, dict) else {}
        attempt = task.get("attempt")
        return cls(
            str(task.get("federation", "?")),
            str(task.get("run", "?")),
            int(task.get("round", round)),
            int(attempt) if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
            kind,
        )

    def label(self) -> str:
        attempt = "?" if self.attempt is None else self.attempt
        return f"{self.kind} {self.federation}/{self.run} round {self.round} attempt {attempt}"


@dataclass(frozen=True)
class Charge:
    """One charged release: ``steps`` subsampled Gaussian steps at (q, sigma), under ``key``."""

    key: ChargeKey
    sample_rate: float
    noise_multiplier: float
    steps: int
    time: str = ""

    @property
    def round(self) -> int:
        return self.key.round

    @property
    def segment(self) -> Segment:
        return Segment(self.sample_rate, self.noise_multiplier, self.steps)

    def to_dict(self) -> dict[str, Any]:
        k = self.key
        return {
            "federation": k.federation,
            "run": k.run,
            "round": k.round,
            "attempt": k.attempt,
            "kind": k.kind,
            "sample_rate": self.sample_rate,
            "noise_multiplier": self.noise_multiplier,
            "steps": self.steps,
            "time": self.time,
        }


@dataclass
class ParsedLedger:
    accountant: str
    delta: float
    target_epsilon: float | None
    budget: dict[str, str]
    charges: list[Charge]
    archived: list[dict[str, Any]]
    notes: list[str]


def _number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _int(v: Any, low: int) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool) and v >= low


def parse_charge(entry: Any, where: str, *, v1: bool = False) -> Charge:
    """One charge object (v2, or a v1 ``{round, sample_rate, noise_multiplier, steps}``)."""
    if not isinstance(entry, dict):
        raise LedgerError(f"{where}: expected an object (got {type(entry).__name__})")
    problems: list[str] = []
    r, q, s, t = (entry.get(k) for k in ("round", "sample_rate", "noise_multiplier", "steps"))
    if not _int(r, 0):
        problems.append(f"round must be an integer >= 0 (got {r!r})")
    if not (_number(q) and 0 < q <= 1):
        problems.append(f"sample_rate must be in (0, 1] (got {q!r})")
    if not (_number(s) and s > 0):
        problems.append(f"noise_multiplier must be a number > 0 (got {s!r})")
    if not _int(t, 0):
        problems.append(f"steps must be an integer >= 0 (got {t!r})")
    if not v1:
        fed, run, attempt, kind, when = (entry.get(k) for k in ("federation", "run", "attempt", "kind", "time"))
        for name, value in (("federation", fed), ("run", run), ("time", when)):
            if not isinstance(value, str):
                problems.append(f"{name} must be a string (got {value!r})")
        if attempt is not None and not _int(attempt, 0):
            problems.append(f"attempt must be an integer >= 0 or null (got {attempt!r})")
        if kind not in KINDS:
            problems.append(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
    if problems:
        raise LedgerError(f"{where}: " + "; ".join(problems))
    # every field read below passed its check above (a missing one is None, which fails it)
    rnd = int(entry["round"])
    key = (
        ChargeKey("?", "v1", rnd, None, "dp-sgd")
        if v1
        else ChargeKey(entry["federation"], entry["run"], rnd, entry.get("attempt"), entry["kind"])
    )
    return Charge(
        key,
        float(entry["sample_rate"]),
        float(entry["noise_multiplier"]),
        int(entry["steps"]),
        "" if v1 else entry["time"],
    )


def parse(data: Any, where: str) -> ParsedLedger:
    """Check every field of a loaded ledger document (v2, or v1 migrated); raises :class:`LedgerError`."""
    if not isinstance(data, dict):
        raise LedgerError(f"{where}: expected a JSON object (got {type(data).__name__})")
    version = data.get("version")
    if version not in (1, LEDGER_VERSION):
        raise LedgerError(
            f"{where}: expected ledger version 1 or {LEDGER_VERSION} (got {version!r}); "
            "this client cannot read it and will not guess"
        )
    missing = [k for k in ("accountant", "delta", "target_epsilon", "charges") if k not in data]
    if version == LEDGER_VERSION:
        missing += [k for k in ("budget", "archived") if k not in data]
    if missing:
        raise LedgerError(f"{where}: missing field(s) {', '.join(missing)}")
    if not isinstance(data["charges"], list):
        raise LedgerError(f"{where}: 'charges' must be a list (got {type(data['charges']).__name__})")
    charges = [parse_charge(e, f"{where}: charges[{i}]", v1=version == 1) for i, e in enumerate(data["charges"])]
    notes: list[str] = []
    if version == 1:
        rounds = [c.round for c in charges]
        if len(set(rounds)) != len(rounds):
            raise LedgerError(f"{where}: v1 ledger repeats a round in its charges")
        budget = {"id": "v1-migrated", "started": "", "reason": "migrated from a version 1 ledger"}
        archived: list[dict[str, Any]] = []
        notes.append(
            f"{where}: migrated from version 1. A v1 ledger replaced the charge of a re-run round, so "
            "it may have forgotten attempts whose output was released: its epsilon is a lower bound"
        )
    else:
        budget, archived = data["budget"], data["archived"]
        if not (
            isinstance(budget, dict)
            and all(isinstance(budget.get(k), str) for k in ("id", "started", "reason"))
            and budget["id"]
        ):
            raise LedgerError(
                f"{where}: 'budget' must be an object with string id, started and reason (got {budget!r})"
            )
        if not isinstance(archived, list) or not all(
            isinstance(a, dict) and isinstance(a.get("id"), str) for a in archived
        ):
            raise LedgerError(f"{where}: 'archived' must be a list of objects with an id")
    return ParsedLedger(
        data["accountant"], data["delta"], data["target_epsilon"], dict(budget), charges, list(archived), notes
    )
