"""Evidence in a client's workdir that it has trained before, so a lost ledger is never a fresh budget.

Every time a ledger is saved on behalf of a workdir, the workdir gets a marker
``WORKDIR/privacy_ledger.marker.json``::

    {"version": 1, "ledger": "/abs/path/privacy_ledger.json", "budget_id": "3f2a...", "charges": 12}

:func:`check_workdir` runs when a ledger is opened for a workdir and refuses (raises
:class:`LedgerRefused`) when:

- the ledger file is missing but the workdir shows earlier DP training (a marker, or entries in
  the update cache ``WORKDIR/cache`` trained with DP; unreadable entries count too);
- the ledger's budget id is neither the marker's nor one the ledger archived (the file was
  replaced by another one);
- the ledger holds fewer charges than the marker recorded for the same budget (it was rolled back).

The guarantee assumes the marker and the ledger are not *both* deleted or rolled back together by
someone who wants to reset the budget: the ledger protects the data holder against accidents and
against a coordinator, not against the client operator itself. The operator's explicit way to
start over is ``fedpsyau privacy new-budget`` (archives, never deletes; logged loudly).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .ledger_format import LedgerError

__all__ = ["MARKER_NAME", "LedgerRefused", "check_workdir", "read_marker", "write_marker"]

MARKER_NAME = "privacy_ledger.marker.json"
_HOW = (
    "restore the ledger file, or start a new budget explicitly with "
    "`fedpsyau privacy new-budget --ledger {ledger} --workdir {workdir} --reason ...` (logged)"
)


class LedgerRefused(LedgerError):
    """The ledger cannot be trusted for this workdir; training is refused."""


def marker_path(workdir: str | os.PathLike) -> Path:
    return Path(workdir) / MARKER_NAME


def read_marker(workdir: str | os.PathLike) -> dict[str, Any] | None:
    """The workdir's marker, or None when there is none; a corrupt marker raises :class:`LedgerRefused`."""
    path = marker_path(workdir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LedgerRefused(
            f"privacy marker {path} is unreadable ({exc}): this workdir has trained before, "
            "so its ledger's state cannot be confirmed"
        ) from None
    ok = (
        isinstance(data, dict)
        and data.get("version") == 1
        and isinstance(data.get("ledger"), str)
        and isinstance(data.get("budget_id"), str)
        and isinstance(data.get("charges"), int)
    )
    if not ok:
        raise LedgerRefused(
            f"privacy marker {path}: expected version 1 with ledger, budget_id and charges (got {data!r})"
        )
    return data


def write_marker(workdir: str | os.PathLike, ledger: str | os.PathLike, budget_id: str, charges: int) -> None:
    """Record (atomically) which ledger and budget this workdir spends from, and how many charges it saw."""
    path = marker_path(workdir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    payload = {"version": 1, "ledger": str(Path(ledger).resolve()), "budget_id": budget_id, "charges": int(charges)}
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(json.dumps(payload))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def training_evidence(workdir: str | os.PathLike) -> list[str]:
    """What in ``workdir`` shows earlier training (empty list: none)."""
    workdir = Path(workdir)
    found = []
    if marker_path(workdir).exists():
        found.append(f"marker {marker_path(workdir)}")
    cache = workdir / "cache"
    if cache.is_dir():
        entries = [p for p in sorted(cache.glob("*.json")) if _trained_with_dp(p)]
        if entries:
            found.append(f"{len(entries)} cached update(s) trained with DP in {cache}")
    return found


def _trained_with_dp(entry: Path) -> bool:
    """False only when the cache sidecar says plainly that its training ran without DP (conservative)."""
    try:
        meta = json.loads(entry.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return True
    privacy = meta.get("privacy") if isinstance(meta, dict) else None
    return not (isinstance(privacy, dict) and privacy.get("enabled") is False)


def check_workdir(
    workdir: str | os.PathLike,
    ledger_path: str | os.PathLike,
    *,
    exists: bool,
    budget_id: str | None = None,
    archived_ids: tuple[str, ...] = (),
    charges: int = 0,
) -> None:
    """Refuse a ledger that cannot account for this workdir's past (see the module docstring)."""
    how = _HOW.format(ledger=ledger_path, workdir=workdir)
    if not exists:
        evidence = training_evidence(workdir)
        if evidence:
            raise LedgerRefused(
                f"privacy ledger {ledger_path} is missing, but workdir {workdir} shows earlier "
                f"training ({'; '.join(evidence)}): refusing to train with a budget restarted at "
                f"zero; {how}"
            )
        return
    marker = read_marker(workdir)
    if marker is None or Path(marker["ledger"]) != Path(ledger_path).resolve():
        return
    if marker["budget_id"] != budget_id and marker["budget_id"] not in archived_ids:
        raise LedgerRefused(
            f"privacy ledger {ledger_path} holds budget {budget_id!r}, but workdir {workdir} last "
            f"spent from budget {marker['budget_id']!r}, which this ledger does not know: the file "
            f"was replaced; {how}"
        )
    if marker["budget_id"] == budget_id and charges < marker["charges"]:
        raise LedgerRefused(
            f"privacy ledger {ledger_path} holds {charges} charge(s), but workdir {workdir} saw "
            f"{marker['charges']}: the ledger was rolled back; {how}"
        )
