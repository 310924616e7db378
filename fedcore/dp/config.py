"""Privacy budget configuration of a client (sample-level DP-SGD).

A :class:`PrivacyConfig` comes from the client's TOML (``[privacy]`` table), possibly with
defaults sent by the coordinator. :meth:`PrivacyConfig.from_dict` collects *every* problem and
raises one :class:`PrivacyConfigError` listing them (as Opacus's ``ModuleValidator.validate``
does). Everything that depends on the client's sample count n (delta, sample rate, the derived
noise multiplier) is resolved by :func:`fedcore.dp.plan.plan_privacy`.

Example ``[privacy]`` table::

    enabled = true
    target_epsilon = 8.0       # budget for the whole planned run
    # delta = 1e-5             # default: the public 1e-5 (must be < 1/n; a client may set its own)
    max_grad_norm = 1.0        # per-sample clipping bound C
    # noise_multiplier = 1.1   # default: derived so that planned_rounds stay within target
    accountant = "prv"         # the default (tight); or "rdp"
    secure_rng = true          # the default: CSPRNG noise and sampling; false (seeded runs) warns loudly
    # ledger = "/data/ledgers/casme2.json"  # default WORKDIR/privacy_ledger.json; share one file between
    #                                        # federations that train on the same data (one budget)
    report_steps = false       # the default: step counts and the noise multiplier (they reveal n) stay local
    planned_rounds = 50
    local_epochs = 1
    batch_size = 32            # expected Poisson batch size

Why the defaults: a delta of min(1e-5, 1/(10 n)) or a reported step count (ceil(n / batch) per
epoch) tells the coordinator the client's data set size n, so delta defaults to the public
constant :data:`DEFAULT_DELTA` and the client reports only epsilon, delta, accountant, target and
whether it is exhausted unless it sets ``report_steps = true``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .names import ACCOUNTANTS, DEFAULT_ACCOUNTANT

__all__ = ["DEFAULT_DELTA", "InsecureRNGWarning", "PrivacyConfig", "PrivacyConfigError"]

#: The public default delta. It does not depend on n (a delta derived from n would reveal n).
DEFAULT_DELTA = 1e-5

logger = logging.getLogger(__name__)


class PrivacyConfigError(ValueError):
    """One or more invalid privacy settings; ``problems`` lists each one."""

    def __init__(self, problems: list[str], source: str = "privacy config") -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"{len(self.problems)} problem(s) in {source}:\n{lines}")


class InsecureRNGWarning(UserWarning):
    """DP noise comes from a statistical (non-cryptographic) generator."""


_INSECURE_MESSAGE = (
    "privacy.secure_rng is off: DP noise and Poisson sampling use torch's statistical generator. "
    "Fine for experiments, but the noise can be predicted or attacked (floating-point attacks, "
    "opacus issue 616). Use it only for seeded, reproducible experiments; remove secure_rng = false (the default is true) and retrain before any real deployment."
)


@dataclass(frozen=True, kw_only=True)
class PrivacyConfig:
    """Sample-level DP-SGD settings of one client. See the module docstring for the TOML form."""

    enabled: bool = True  # False: plain SGD with the same interface (baselines; not private)
    target_epsilon: float | None = None  # budget for the whole run; None: unlimited (report only)
    delta: float | None = None  # None: DEFAULT_DELTA (1e-5, public); a given delta must be < 1/n
    max_grad_norm: float = 1.0  # per-sample L2 clipping bound C
    noise_multiplier: float | None = None  # sigma; None: derived from target_epsilon
    accountant: str = DEFAULT_ACCOUNTANT  # one of ACCOUNTANTS ("prv" tight, "rdp" robust)
    secure_rng: bool = True  # CSPRNG for noise and sampling; False (reproducible seeded runs) warns
    ledger: str | None = None  # ledger file; None: WORKDIR/privacy_ledger.json (see ledger_path)
    report_steps: bool = False  # True: also report step counts and sigma to the coordinator (reveals n)
    statistics_epsilon: float = 1.0  # round-0 statistics release, when this client adds the noise itself
    planned_rounds: int  # rounds this client expects to train (for deriving sigma)
    local_epochs: int  # epochs per round
    batch_size: int  # expected Poisson batch size

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise PrivacyConfigError(problems)
        if self.enabled and not self.secure_rng:
            warnings.warn(_INSECURE_MESSAGE, InsecureRNGWarning, stacklevel=3)
            logger.warning(_INSECURE_MESSAGE)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str = "privacy config") -> PrivacyConfig:
        """Build from a TOML/JSON table; every problem is reported in one :class:`PrivacyConfigError`.

        Args:
            data: the table.
            source: where it came from, for the message (e.g. "client.toml [privacy]").
        """
        if not isinstance(data, Mapping):
            raise PrivacyConfigError([f"expected a table of settings (got {type(data).__name__})"], source)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        problems = [f"unknown setting {key!r}; allowed: {', '.join(fields)}" for key in data if key not in fields]
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        problems += [f"missing required setting {name!r}" for name in required if name not in data]
        values = {k: v for k, v in data.items() if k in fields}
        filled = {n: values.get(n, f.default) for n, f in fields.items()}
        problems += _problems(_Unchecked(**filled))
        if problems:
            raise PrivacyConfigError(problems, source)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (TOML/JSON-ready; None values are kept)."""
        return dataclasses.asdict(self)

    @property
    def resolved_delta(self) -> float:
        """The configured delta, or the public :data:`DEFAULT_DELTA`."""
        return DEFAULT_DELTA if self.delta is None else float(self.delta)

    def ledger_path(self, workdir: str | os.PathLike) -> Path:
        """``ledger`` (relative paths taken from ``workdir``) or ``WORKDIR/privacy_ledger.json``."""
        if self.ledger is None:
            return Path(workdir) / "privacy_ledger.json"
        path = Path(self.ledger).expanduser()
        return path if path.is_absolute() else Path(workdir) / path

    def summary(self) -> str:
        """One line for the start-up log."""
        if not self.enabled:
            return "privacy: DISABLED (plain SGD, no DP guarantee)"
        sigma = "derived" if self.noise_multiplier is None else f"{self.noise_multiplier:g}"
        target = "none" if self.target_epsilon is None else f"{self.target_epsilon:g}"
        delta = f"{DEFAULT_DELTA:g} (public default)" if self.delta is None else f"{self.delta:g}"
        return (
            f"privacy: DP-SGD target_epsilon={target} delta={delta} max_grad_norm={self.max_grad_norm:g} "
            f"noise_multiplier={sigma} accountant={self.accountant} secure_rng={self.secure_rng} "
            f"ledger={self.ledger or 'WORKDIR/privacy_ledger.json'} report_steps={self.report_steps} "
            f"planned_rounds={self.planned_rounds} local_epochs={self.local_epochs} batch_size={self.batch_size}"
        )


@dataclass
class _Unchecked:
    """Same fields as PrivacyConfig, without validation (so from_dict can collect problems)."""

    enabled: Any
    target_epsilon: Any
    delta: Any
    max_grad_norm: Any
    noise_multiplier: Any
    accountant: Any
    secure_rng: Any
    ledger: Any
    report_steps: Any
    statistics_epsilon: Any
    planned_rounds: Any
    local_epochs: Any
    batch_size: Any


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 1


def _problems(c: Any) -> list[str]:
    """Every problem with the values of ``c`` (a PrivacyConfig or _Unchecked)."""
    out: list[str] = []
    if not isinstance(c.enabled, bool):
        out.append(f"enabled: expected true or false (got {c.enabled!r})")
    if not isinstance(c.secure_rng, bool):
        out.append(f"secure_rng: expected true or false (got {c.secure_rng!r})")
    if not isinstance(c.report_steps, bool):
        out.append(f"report_steps: expected true or false (got {c.report_steps!r})")
    if c.ledger is not None and not (isinstance(c.ledger, str) and c.ledger.strip()):
        out.append(f"ledger: expected a file path or absent (got {c.ledger!r})")
    if not (_is_number(c.statistics_epsilon) and c.statistics_epsilon > 0):
        out.append(f"statistics_epsilon: expected a finite number > 0 (got {c.statistics_epsilon!r})")
    if c.target_epsilon is not None and not (_is_number(c.target_epsilon) and c.target_epsilon > 0):
        out.append(f"target_epsilon: expected a finite number > 0 or absent (got {c.target_epsilon!r})")
    if c.delta is not None and not (_is_number(c.delta) and 0 < c.delta < 1):
        out.append(f"delta: expected a number in (0, 1) or absent (got {c.delta!r})")
    if not (_is_number(c.max_grad_norm) and c.max_grad_norm > 0):
        out.append(f"max_grad_norm: expected a finite number > 0 (got {c.max_grad_norm!r})")
    if c.noise_multiplier is not None and not (_is_number(c.noise_multiplier) and c.noise_multiplier > 0):
        out.append(f"noise_multiplier: expected a finite number > 0 or absent (got {c.noise_multiplier!r})")
    if c.accountant not in ACCOUNTANTS:
        out.append(f"accountant: expected one of {', '.join(repr(a) for a in ACCOUNTANTS)} (got {c.accountant!r})")
    for name in ("planned_rounds", "local_epochs", "batch_size"):
        value = getattr(c, name)
        if value is not dataclasses.MISSING and not _is_count(value):
            out.append(f"{name}: expected an integer >= 1 (got {value!r})")
    if c.enabled is True and c.target_epsilon is None and c.noise_multiplier is None:
        out.append("target_epsilon or noise_multiplier: DP is enabled but neither is set (set at least one)")
    return out
