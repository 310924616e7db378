"""A client's persisted privacy ledger: append-only spending, and refusal past the budget.

The ledger is a versioned JSON file (:mod:`.ledger_format`) holding the accountant name, delta,
the target epsilon, the current budget's id and the list of charges. Epsilon is always
recomputed from the charges (:func:`fedcore.dp.accounting.account`), never trusted from the file.

Guarantees (and their assumptions):

- **Append-only.** Every charge is appended; nothing is replaced or removed. Charges are keyed by
  (federation id, run id, round, attempt, kind) for the record, but two charges with one key both
  count: whatever DP output may have left the client is paid for.
- **Crash safety.** Every change is written atomically (temporary file in the same folder, fsync,
  rename, fsync of the folder): a crash leaves the old or the new ledger, never a torn one.
- **Shared budgets.** Several client daemons (one per federation that uses the same data) may
  share one ledger file through ``[privacy] ledger``: every read and every charge happens under
  an exclusive ``flock`` on ``<ledger>.lock`` and re-reads the file first, so no charge is lost.
  (POSIX advisory locks: every writer must be this code, on a local file system.)
- **No silent restart at zero.** Opened for a workdir (:meth:`PrivacyLedger.open` with
  ``workdir``), a missing, replaced or rolled-back ledger of a workdir that trained before is
  refused (:mod:`.ledger_guard`); a corrupt file is refused with the parse error. Only the
  operator's explicit :meth:`PrivacyLedger.new_budget` (``fedpsyau privacy new-budget``) starts
  again, archiving the old charges and logging a warning.

One limit stays: the ledger cannot protect the budget against the client operator who deletes
both the ledger and the workdir's evidence. It protects the data subjects against accidents,
restarts and the coordinator.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fedcore.common.errors import BudgetExhausted  # the one budget refusal, re-exported here

from .accounting import ACCOUNTANTS, EpsilonResult, Segment, account
from .ledger_format import LEDGER_VERSION, Charge, ChargeKey, LedgerError, now, parse, parse_charge
from .ledger_guard import LedgerRefused, check_workdir, write_marker

__all__ = ["LEDGER_VERSION", "BudgetExhausted", "Charge", "ChargeKey", "LedgerError", "LedgerRefused", "PrivacyLedger"]

logger = logging.getLogger(__name__)

_SLACK = 1e-9  # relative float slack when comparing with the target


class PrivacyLedger:
    """Cumulative (epsilon, delta) spending of one client (or one data set shared by federations).

    Args:
        path: the JSON file (created on the first :meth:`save` or :meth:`charge`).
        accountant: "prv" or "rdp".
        delta: the client's delta.
        target_epsilon: the budget; ``None`` means no limit (spending is still recorded).
        workdir: the client workdir this ledger is spent from (its marker is kept up to date).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        accountant: str,
        delta: float,
        target_epsilon: float | None,
        workdir: str | os.PathLike | None = None,
    ) -> None:
        problems = _settings_problems(accountant, delta, target_epsilon)
        if problems:
            raise LedgerError(f"ledger {path}: " + "; ".join(problems))
        self.path = Path(path)
        self.accountant = accountant
        self.delta = float(delta)
        self.target_epsilon = None if target_epsilon is None else float(target_epsilon)
        self.workdir = None if workdir is None else Path(workdir)
        self.budget: dict[str, str] = {"id": secrets.token_hex(8), "started": now(), "reason": "created"}
        self.archived: list[dict[str, Any]] = []
        self._charges: list[Charge] = []
        self._cache: tuple[tuple[Segment, ...], EpsilonResult] | None = None

    # ----------------------------------------------------------------- persistence
    @classmethod
    def load(cls, path: str | os.PathLike, *, workdir: str | os.PathLike | None = None) -> PrivacyLedger:
        """Load a ledger file, validating every field (raises :class:`LedgerError`); v1 is migrated."""
        path = Path(path)
        parsed = _read(path)
        problems = _settings_problems(parsed.accountant, parsed.delta, parsed.target_epsilon)
        if problems:
            raise LedgerError(f"ledger {path}: " + "; ".join(problems))
        ledger = cls(
            path,
            accountant=parsed.accountant,
            delta=parsed.delta,
            target_epsilon=parsed.target_epsilon,
            workdir=workdir,
        )
        ledger._adopt(parsed)
        for note in parsed.notes:
            logger.warning("privacy ledger %s", note)
            backup = path.with_name(path.name + ".v1.bak")
            if not backup.exists():
                shutil.copy2(path, backup)
                logger.warning("privacy ledger %s: the version 1 file is kept as %s", path, backup)
        return ledger

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        accountant: str,
        delta: float,
        target_epsilon: float | None,
        workdir: str | os.PathLike | None = None,
    ) -> PrivacyLedger:
        """Load ``path`` if it exists (keeping its charges), else start an empty ledger.

        With ``workdir``, a ledger that cannot account for that workdir's earlier training is
        refused with :class:`~fedcore.dp.ledger_guard.LedgerRefused` (missing, replaced, rolled
        back). If the stored accountant, delta or target differ from the given ones, the given
        settings win (epsilon is recomputed from the charges, so nothing is lost; logged).
        """
        path = Path(path)
        with _locked(path):
            exists = path.exists()
            if not exists:
                if workdir is not None:
                    check_workdir(workdir, path, exists=False)
                fresh = cls(path, accountant=accountant, delta=delta, target_epsilon=target_epsilon, workdir=workdir)
                fresh._save_unlocked()  # the budget id is fixed now: daemons sharing the file agree on it
                logger.info("privacy ledger %s: new budget %s", path, fresh.budget["id"])
                return fresh
            ledger = cls.load(path, workdir=workdir)
            if workdir is not None:
                check_workdir(
                    workdir,
                    path,
                    exists=True,
                    budget_id=ledger.budget["id"],
                    archived_ids=tuple(a["id"] for a in ledger.archived),
                    charges=len(ledger._charges),
                )
            changes = {
                name: (old, new)
                for name, old, new in (
                    ("accountant", ledger.accountant, accountant),
                    ("delta", ledger.delta, float(delta)),
                    (
                        "target_epsilon",
                        ledger.target_epsilon,
                        None if target_epsilon is None else float(target_epsilon),
                    ),
                )
                if old != new
            }
            fresh = cls(path, accountant=accountant, delta=delta, target_epsilon=target_epsilon, workdir=workdir)
            fresh._charges, fresh.budget, fresh.archived = list(ledger._charges), ledger.budget, ledger.archived
            if changes:
                logger.warning(
                    "privacy ledger %s: settings changed %s; epsilon recomputed from its charges", path, changes
                )
                fresh._save_unlocked()
            elif workdir is not None:
                write_marker(workdir, path, fresh.budget["id"], len(fresh._charges))
            return fresh

    def to_dict(self) -> dict[str, Any]:
        spent = self._compute(tuple(c.segment for c in self._charges)).epsilon
        return {
            "version": LEDGER_VERSION,
            "accountant": self.accountant,
            "delta": self.delta,
            "target_epsilon": self.target_epsilon,
            "budget": dict(self.budget),
            "charges": [c.to_dict() for c in self._charges],
            "archived": list(self.archived),
            "epsilon": spent if math.isfinite(spent) else None,  # informational only
        }

    def save(self) -> None:
        """Write atomically under the ledger's lock (the file's newer charges are merged in first)."""
        with _locked(self.path):
            self._save_unlocked()

    def _save_unlocked(self) -> None:
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
        if self.workdir is not None:
            write_marker(self.workdir, self.path, self.budget["id"], len(self._charges))

    def _adopt(self, parsed) -> None:
        self._charges, self.budget, self.archived = list(parsed.charges), parsed.budget, parsed.archived

    def _refresh_unlocked(self) -> None:
        """Take the file's charges (other daemons sharing the ledger may have appended)."""
        if not self.path.exists():
            return
        parsed = _read(self.path)
        if parsed.budget["id"] != self.budget["id"] and self.budget["id"] not in [a["id"] for a in parsed.archived]:
            raise LedgerRefused(
                f"privacy ledger {self.path} now holds budget {parsed.budget['id']!r}, not this "
                f"client's {self.budget['id']!r}: the file was replaced while in use"
            )
        if len(parsed.charges) < len(self._charges) and parsed.budget["id"] == self.budget["id"]:
            raise LedgerRefused(
                f"privacy ledger {self.path} holds {len(parsed.charges)} charge(s), fewer than the "
                f"{len(self._charges)} this client recorded: the file was rolled back"
            )
        self._adopt(parsed)

    def refresh(self) -> None:
        with _locked(self.path):
            self._refresh_unlocked()

    # ------------------------------------------------------------------- spending
    @property
    def charges(self) -> tuple[Charge, ...]:
        """Every charge of the current budget, in the order charged (re-read from the file)."""
        self.refresh()
        return tuple(self._charges)

    @property
    def steps(self) -> int:
        """DP-SGD steps charged (statistics releases are not steps)."""
        return sum(c.steps for c in self.charges if c.key.kind == "dp-sgd")

    def _compute(self, segments: tuple[Segment, ...]) -> EpsilonResult:
        if self._cache is None or self._cache[0] != segments:
            self._cache = (segments, account(list(segments), self.delta, self.accountant))
        return self._cache[1]

    def result(self) -> EpsilonResult:
        """Epsilon spent so far with its delta, accountant actually used and step count."""
        self.refresh()
        return self._compute(tuple(c.segment for c in self._charges))

    def spent(self) -> float:
        """Epsilon spent so far."""
        return self.result().epsilon

    def would_spend(
        self, sample_rate: float, noise_multiplier: float, steps: int, *, round: int | None = None
    ) -> float:
        """Epsilon after charging these steps on top of everything charged (``round`` is ignored:
        nothing is ever replaced; kept for callers of the v1 API)."""
        self.refresh()
        segments = [c.segment for c in self._charges] + [Segment(sample_rate, noise_multiplier, steps)]
        return account(segments, self.delta, self.accountant).epsilon

    def would_exceed(
        self, sample_rate: float, noise_multiplier: float, steps: int, *, round: int | None = None
    ) -> bool:
        """True if charging these steps would take epsilon past the target."""
        if self.target_epsilon is None:
            return False
        return self.would_spend(sample_rate, noise_multiplier, steps) > self.target_epsilon * (1 + _SLACK)

    @property
    def exhausted(self) -> bool:
        """True once the spent epsilon has reached the target."""
        return self.target_epsilon is not None and self.spent() >= self.target_epsilon * (1 - _SLACK)

    def check(self, round: int, sample_rate: float, noise_multiplier: float, steps: int) -> None:
        """Raise :class:`BudgetExhausted` if these steps, added to all charges, would overspend."""
        if self.target_epsilon is None:
            return
        after = self.would_spend(sample_rate, noise_multiplier, steps)
        if after > self.target_epsilon * (1 + _SLACK):
            raise BudgetExhausted.over_budget(self.spent(), self.target_epsilon, after, round)

    def charge(
        self, round: int, sample_rate: float, noise_multiplier: float, steps: int, *, key: ChargeKey | None = None
    ) -> float:
        """Append a charge (under ``key``; default: round ``round`` of an unnamed run), save, return epsilon.

        Charging never refuses: the steps have been taken. Call :meth:`check` before training.
        """
        key = key or ChargeKey(round=round)
        if key.round != round:
            raise ValueError(f"charge: round {round} differs from its key's round {key.round}")
        charge = parse_charge({**Charge(key, sample_rate, noise_multiplier, steps, now()).to_dict()}, "charge")
        with _locked(self.path):
            self._refresh_unlocked()
            if any(c.key == key for c in self._charges):
                logger.warning("privacy ledger %s: %s charged again; both charges count", self.path, key.label())
            self._charges.append(charge)
            self._save_unlocked()
        return self._compute(tuple(c.segment for c in self._charges)).epsilon

    def charge_statistics(self, key: ChargeKey, noise_multiplier: float) -> float:
        """Append one Gaussian-mechanism release (sample rate 1, one step, sigma / sensitivity)."""
        if key.kind != "statistics":
            raise ValueError(f"charge_statistics needs a key of kind 'statistics' (got {key.kind!r})")
        return self.charge(key.round, 1.0, noise_multiplier, 1, key=key)

    def new_budget(self, reason: str) -> str:
        """Archive every current charge (kept in the file, no longer counted) and start a new budget.

        This is the operator's deliberate act (``fedpsyau privacy new-budget``); it is logged as a
        warning. Returns the new budget id.
        """
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError("new_budget needs a non-empty reason (it is stored in the ledger)")
        with _locked(self.path):
            self._refresh_unlocked()
            spent = self._compute(tuple(c.segment for c in self._charges)).epsilon
            self.archived.append(
                {
                    **self.budget,
                    "ended": now(),
                    "epsilon": spent if math.isfinite(spent) else None,
                    "charges": [c.to_dict() for c in self._charges],
                }
            )
            old = self.budget["id"]
            self.budget = {"id": secrets.token_hex(8), "started": now(), "reason": reason.strip()}
            self._charges = []
            self._save_unlocked()
        logger.warning(
            "privacy ledger %s: NEW PRIVACY BUDGET %s started by the operator (%s); budget %s with "
            "epsilon %.4g archived and no longer counted",
            self.path,
            self.budget["id"],
            reason,
            old,
            spent,
        )
        return self.budget["id"]

    def __repr__(self) -> str:
        return (
            f"PrivacyLedger(path={str(self.path)!r}, accountant={self.accountant!r}, delta={self.delta:g}, "
            f"target_epsilon={self.target_epsilon}, charges={len(self._charges)}, steps={self.steps})"
        )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``<path>.lock`` (shared ledgers; see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _read(path: Path):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LedgerError(f"ledger {path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerError(
            f"ledger {path}: cannot read JSON ({exc}); refusing to train on a ledger whose spending "
            "is unknown (restore it from a backup)"
        ) from None
    return parse(data, f"ledger {path}")


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
