"""Which refusals stop the federation at once: a client whose configuration or data is broken.

A TRAIN or STATS report with ``ready = false`` carries the client's reason in ``refusal``. Most
reasons are worth another attempt (a dead peer, a NaN from one unlucky step, a budget that
excludes just that client); a broken configuration or data set is not: every attempt fails the
same way, and retrying only hides the client's message behind "too few clients". Those
refusals are *fatal*: the coordinator aborts at once with the client's own words (exit 4).

Fatal, as the client reports them (:mod:`fedcore.client.handlers` and
:mod:`fedcore.client.startup` write these texts; a test drives the real handlers)::

    cannot take part: ...                        the client's workload could not start (startup)
    training failed: <Name>: ...                 Name a configuration/data error (CONFIG_ERRORS,
                                                 or any name ending in ConfigError / DataError)
    this workload computes no statistics         the federation needs round-0 statistics
    statistics must be a finite 1-D vector ...   the workload's statistics are broken
    statistics refused: [privacy] ...            a privacy setting the release cannot use
    statistics refused: privacy ledger: ...      the client's privacy ledger is unusable

Everything else (a budget exhausted, ``training failed: RuntimeError: ...``, a NaN update) is
retried as before.
"""

from __future__ import annotations

import re

# the prefix of a refusal sent by a client whose workload could not start (fedcore.client.startup)
from fedcore.common.errors import STARTUP_PREFIX  # shared with the client; re-exported here

#: exception names that mean "this client's configuration or data is broken"
CONFIG_ERRORS = frozenset(
    {
        "ConfigError",
        "PrivacyConfigError",
        "DataError",
        "CheckpointError",
        "LedgerError",
        "LedgerRefused",
        "FileNotFoundError",
        "NotADirectoryError",
        "IsADirectoryError",
        "PermissionError",
        "FaceNotFoundError",
    }
)
_FAILED = re.compile(r"^training failed: ([A-Za-z_][A-Za-z0-9_]*): ")
_FATAL_PREFIXES = (
    STARTUP_PREFIX,
    "this workload computes no statistics",
    "statistics must be a finite 1-D vector",
    "statistics refused: [privacy]",
    "statistics refused: privacy ledger:",
)


def fatal_refusal(refusal: str) -> bool:
    """True when ``refusal`` says the client's configuration or data is broken (no retry can help)."""
    if refusal.startswith(_FATAL_PREFIXES):
        return True
    m = _FAILED.match(refusal)
    if m is None:
        return False
    name = m.group(1)
    return name in CONFIG_ERRORS or name.endswith(("ConfigError", "DataError"))


def fatal_reason(refusals: dict[str, str], round_: int) -> str:
    """The abort reason for the fatal ones among ``refusals`` (client -> refusal); "" when none is fatal."""
    fatal = {c: r for c, r in sorted(refusals.items()) if fatal_refusal(r)}
    if not fatal:
        return ""
    what = "round 0 (statistics)" if round_ == 0 else f"round {round_}"
    names = ", ".join(fatal)
    detail = "; ".join(f"{c}: {' '.join(r.split())}" for c, r in fatal.items())  # one line, however it came
    return (
        f"{names} cannot take part ({what}): {detail} -- fix that client's configuration or data and start "
        f"the federation again (nothing was aggregated from this attempt)"
    )
