"""Names every part of fedcore.dp agrees on, importable without Opacus or torch (CLI set-up, configs)."""

from __future__ import annotations

#: Accountant names accepted everywhere in fedcore.dp (the registry error messages use).
ACCOUNTANTS: tuple[str, ...] = ("prv", "rdp")
#: The default accountant (tight); "rdp" is the option and the logged cross-check.
DEFAULT_ACCOUNTANT = "prv"
