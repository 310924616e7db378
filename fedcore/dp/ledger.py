"""A client's persisted privacy ledger: what has been spent, and refusal past the budget.

The ledger is a JSON file holding the accountant name, delta, the target epsilon and the list of
charged rounds (round, sample_rate, noise_multiplier, steps). Epsilon is always recomputed from
that history (:func:`fedcore.dp.accounting.account`), never trusted from the file. Every change
is written atomically (temporary file in the same folder, fsync, rename, fsync of the folder), so
a crash leaves either the old or the new ledger, never a torn one; a restarted client loads it
with :meth:`PrivacyLedger.open` and carries on spending cumulatively.

Per-round idempotence: :meth:`PrivacyLedger.charge` for a round that is already charged
*replaces* that round's entry. This is for a round that is re-run after a coordinator restart
(the coordinator never aggregated the first attempt, so only one attempt's output is released).
If an attempt's output may have been released (e.g. aggregated and published), charge the re-run
under a new round number instead, so both attempts count.

Format (version 1)::

    {"version": 1, "accountant": "rdp", "delta": 1e-05, "target_epsilon": 8.0,
     "charges": [{"round": 1, "sample_rate": 0.125, "noise_multiplier": 1.79, "steps": 8}, ...],
     "epsilon": 0.91}          # informational; recomputed on load

One process owns a ledger file; there is no cross-process locking.
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .accounting import ACCOUNTANTS, EpsilonResult, Segment, account

__all__ = ["LEDGER_VERSION", "BudgetExhausted", "Charge", "LedgerError", "PrivacyLedger"]

logger = logging.getLogger(__name__)

LEDGER_VERSION = 1
_SLACK = 1e-9  # relative float slack when comparing with the target


class BudgetExhausted(RuntimeError):
    """Training would spend more than the client's privacy budget.

    Attributes: ``spent`` (epsilon so far), ``target`` (the budget), ``would_spend`` (epsilon after
    the refused training, if known), ``round``.
    """

    def __init__(self, spent: float, target: float, would_spend: float | None = None, round: int | None = None):
        self.spent, self.target, self.would_spend, self.round = spent, target, would_spend, round
        after = "" if would_spend is None else f"; this round would bring it to {would_spend:.4g}"
        where = "" if round is None else f"round {round}: "
        super().__init__(
            f"{where}privacy budget exhausted: epsilon spent {spent:.4g} of target {target:.4g}{after}"
        )


class LedgerError(ValueError):
    """A ledger file is missing a field, has a wrong value, or cannot be parsed."""


@dataclass(frozen=True)
class Charge:
    """One round's DP-SGD steps."""

    round: int
    sample_rate: float
    noise_multiplier: float
    steps: int

    @property
    def segment(self) -> Segment:
        return Segment(self.sample_rate, self.noise_multiplier, self.steps)


class PrivacyLedger:
    """Cumulative (epsilon, delta) spending of one client, persisted at ``path``.

    Args:
        path: the JSON file (created on the first :meth:`save` or :meth:`charge`).
        accountant: "rdp" or "prv".
        delta: the client's delta.
        target_epsilon: the budget; ``None`` means no limit (spending is still recorded).
    """

    def __init__(
        self, path: str | os.PathLike, *, accountant: str, delta: float, target_epsilon: float | None
    ) -> None:
        problems = _settings_problems(accountant, delta, target_epsilon)
        if problems:
            raise LedgerError(f"ledger {path}: " + "; ".join(problems))
        self.path = Path(path)
        self.accountant = accountant
        self.delta = float(delta)
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self._charges: dict[int, Charge] = {}
        self._cache: tuple[tuple[Charge, ...], EpsilonResult] | None = None

    # ----------------------------------------------------------------- persistence
    @classmethod
    def load(cls, path: str | os.PathLike) -> PrivacyLedger:
        """Load a ledger file, validating every field (raises :class:`LedgerError`)."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LedgerError(f"ledger {path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise LedgerError(f"ledger {path}: cannot read JSON ({exc})") from None
        if not isinstance(data, dict):
            raise LedgerError(f"ledger {path}: expected a JSON object (got {type(data).__name__})")
        if data.get("version") != LEDGER_VERSION:
            raise LedgerError(f"ledger {path}: expected version {LEDGER_VERSION} (got {data.get('version')!r})")
        missing = [k for k in ("accountant", "delta", "target_epsilon", "charges") if k not in data]
        if missing:
            raise LedgerError(f"ledger {path}: missing field(s) {', '.join(missing)}")
        ledger = cls(path, accountant=data["accountant"], delta=data["delta"], target_epsilon=data["target_epsilon"])
        if not isinstance(data["charges"], list):
            raise LedgerError(f"ledger {path}: 'charges' must be a list (got {type(data['charges']).__name__})")
        for i, entry in enumerate(data["charges"]):
            charge = _parse_charge(entry, f"ledger {path}: charges[{i}]")
            if charge.round in ledger._charges:
                raise LedgerError(f"ledger {path}: charges[{i}] repeats round {charge.round}")
            ledger._charges[charge.round] = charge
        return ledger

    @classmethod
    def open(
        cls, path: str | os.PathLike, *, accountant: str, delta: float, target_epsilon: float | None
    ) -> PrivacyLedger:
        """Load ``path`` if it exists (keeping its charges), else start an empty ledger.

        If the stored accountant, delta or target differ from the given ones, the given settings
        win (epsilon is recomputed from the charges, so nothing is lost) and the change is logged.
        """
        if not Path(path).exists():
            return cls(path, accountant=accountant, delta=delta, target_epsilon=target_epsilon)
        ledger = cls.load(path)
        changes = {
            name: (old, new)
            for name, old, new in (
                ("accountant", ledger.accountant, accountant),
                ("delta", ledger.delta, float(delta)),
                ("target_epsilon", ledger.target_epsilon, None if target_epsilon is None else float(target_epsilon)),
            )
            if old != new
        }
        if changes:
            fresh = cls(path, accountant=accountant, delta=delta, target_epsilon=target_epsilon)
            fresh._charges = dict(ledger._charges)
            logger.warning("privacy ledger %s: settings changed %s; epsilon recomputed from its charges", path, changes)
            fresh.save()
            return fresh
        return ledger

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": LEDGER_VERSION,
            "accountant": self.accountant,
            "delta": self.delta,
            "target_epsilon": self.target_epsilon,
            "charges": [asdict(c) for c in self.charges],
            "epsilon": self.spent() if math.isfinite(self.spent()) else None,  # informational only
        }

    def save(self) -> None:
        """Write atomically: temp file in the same folder, fsync, rename, fsync the folder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = json.dumps(self.to_dict(), indent=2, allow_nan=False).encode("utf-8")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(payload)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    # ------------------------------------------------------------------- spending
    @property
    def charges(self) -> tuple[Charge, ...]:
        """Charged rounds in round order."""
        return tuple(self._charges[r] for r in sorted(self._charges))

    @property
    def steps(self) -> int:
        return sum(c.steps for c in self._charges.values())

    def result(self) -> EpsilonResult:
        """Epsilon spent so far with its delta, accountant actually used and step count."""
        key = self.charges
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, account([c.segment for c in key], self.delta, self.accountant))
        return self._cache[1]

    def spent(self) -> float:
        """Epsilon spent so far."""
        return self.result().epsilon

    def would_spend(self, sample_rate: float, noise_multiplier: float, steps: int, *, round: int | None = None) -> float:
        """Epsilon after charging these steps (replacing ``round``'s charge if it exists)."""
        others = [c.segment for r, c in self._charges.items() if r != round]
        return account([*others, Segment(sample_rate, noise_multiplier, steps)], self.delta, self.accountant).epsilon

    def would_exceed(self, sample_rate: float, noise_multiplier: float, steps: int, *, round: int | None = None) -> bool:
        """True if charging these steps would take epsilon past the target."""
        if self.target_epsilon is None:
            return False
        after = self.would_spend(sample_rate, noise_multiplier, steps, round=round)
        return after > self.target_epsilon * (1 + _SLACK)

    @property
    def exhausted(self) -> bool:
        """True once the spent epsilon has reached the target."""
        return self.target_epsilon is not None and self.spent() >= self.target_epsilon * (1 - _SLACK)

    def check(self, round: int, sample_rate: float, noise_multiplier: float, steps: int) -> None:
        """Raise :class:`BudgetExhausted` if training ``round`` with these steps would overspend."""
        if self.target_epsilon is None:
            return
        after = self.would_spend(sample_rate, noise_multiplier, steps, round=round)
        if after > self.target_epsilon * (1 + _SLACK):
            raise BudgetExhausted(self.spent(), self.target_epsilon, after, round)

    def charge(self, round: int, sample_rate: float, noise_multiplier: float, steps: int) -> float:
        """Record ``round``'s steps (replacing an earlier charge of that round), save, return epsilon.

        Charging never refuses: the steps have been taken. Call :meth:`check` before training.
        """
        charge = _parse_charge(
            {"round": round, "sample_rate": sample_rate, "noise_multiplier": noise_multiplier, "steps": steps},
            "charge",
        )
        if round in self._charges:
            logger.info("privacy ledger %s: round %d charged again; replacing its earlier charge", self.path, round)
        self._charges[charge.round] = charge
        self.save()
        return self.spent()

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger(path={str(self.path)!r}, accountant={self.accountant!r}, delta={self.delta:g}, "
            f"target_epsilon={self.target_epsilon}, rounds={len(self._charges)}, steps={self.steps})"
        )


def _settings_problems(accountant: Any, delta: Any, target: Any) -> list[str]:
    problems = []
    if accountant not in ACCOUNTANTS:
        problems.append(f"accountant must be one of {', '.join(ACCOUNTANTS)} (got {accountant!r})")
    if not (_number(delta) and 0 < delta < 1):
        problems.append(f"delta must be a number in (0, 1) (got {delta!r})")
    if target is not None and not (_number(target) and target > 0):
        problems.append(f"target_epsilon must be a number > 0 or null (got {target!r})")
    return problems


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _parse_charge(entry: Any, where: str) -> Charge:
    if not isinstance(entry, dict):
        raise LedgerError(f"{where}: expected an object (got {type(entry).__name__})")
    problems = []
    r, q, s, t = (entry.get(k) for k in ("round", "sample_rate", "noise_multiplier", "steps"))
    if not (isinstance(r, int) and not isinstance(r, bool) and r >= 0):
        problems.append(f"round must be an integer >= 0 (got {r!r})")
    if not (_number(q) and 0 < q <= 1):
        problems.append(f"sample_rate must be in (0, 1] (got {q!r})")
    if not (_number(s) and s > 0):
        problems.append(f"noise_multiplier must be a number > 0 (got {s!r})")
    if not (isinstance(t, int) and not isinstance(t, bool) and t >= 0):
        problems.append(f"steps must be an integer >= 0 (got {t!r})")
    if problems:
        raise LedgerError(f"{where}: " + "; ".join(problems))
    return Charge(int(r), float(q), float(s), int(t))
