"""Helpers shared by the fedcore.dp tests (imported as a module: the test folder is on sys.path)."""

from __future__ import annotations

import warnings

from fedcore.dp.config import InsecureRNGWarning, PrivacyConfig


def make_config(**overrides) -> PrivacyConfig:
    """A valid enabled config for tests: RDP (fast) and torch's seeded generator (reproducible), both
    explicit here since the library defaults are PRV and the CSPRNG; the insecure RNG warning is
    silenced (tests exercise it on purpose)."""
    values = {
        "target_epsilon": 8.0,
        "planned_rounds": 5,
        "local_epochs": 1,
        "batch_size": 16,
        "accountant": "rdp",
        "secure_rng": False,
    }
    values.update(overrides)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", InsecureRNGWarning)
        return PrivacyConfig(**values)
