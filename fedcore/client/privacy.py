"""What the client daemon does about privacy around the workload: charge releases, trim reports.

- :func:`task_context`: the ``config["task"]`` table a Trainer gets (federation, run, round,
  attempt, and a fresh ``seed`` per training), so that a workload can key its ledger charges
  (``ChargeKey.from_task``) and retrain a new attempt with fresh randomness.
- :func:`statistics_release`: with DP on, the noise of a statistics release (round 0). The
  aggregation mode's own noise when it adds some (SecAgg+'s distributed discrete Gaussian,
  :meth:`~fedcore.common.aggregation.ClientMode.statistics_noise`); otherwise (plain, CKKS) the
  client adds discrete Gaussian noise to its own counts (secure RNG), scaled so that any value
  another party sees, a sum of at least :meth:`~fedcore.common.aggregation.ClientMode.statistics_cover`
  clients, carries the noise of a (``[privacy] statistics_epsilon``, delta) Gaussian mechanism for
  the workload's stated L2 sensitivity (:func:`fedcore.common.workload.statistics_sensitivity`).
- :func:`charge_statistics`: that release is charged to the client's ledger as one Gaussian
  mechanism (sample rate 1, one step, sigma / sensitivity) *before* anything leaves the client,
  from the noise record ``config["statistics_noise"] = {sigma, sensitivity, delta}`` (``sigma``:
  the std that survives in the released sum; :mod:`fedcore.dp.statistics`). Without DP the
  release is not private and is logged as such (not charged).
- :func:`trim_report`: unless the client sets ``[privacy] report_steps = true``, step counts and
  the noise multiplier (which, with the batch size, reveal the data set size n) are kept out of
  what goes to the coordinator; the client's own log and ledger keep them.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedcore.common.workload import PrivacyState

log = logging.getLogger(__name__)

#: TrainReport metrics that count steps (they reveal n) and leave only with report_steps = true.
STEP_METRICS = ("steps", "empty_batches")


class StatisticsRefused(Exception):
    """The statistics release cannot be charged (budget, ledger); the client does not send it."""


def dp_enabled(table: Mapping[str, Any]) -> bool:
    """True when a merged ``[privacy]`` table asks for DP (non-empty and not ``enabled = false``)."""
    return bool(table) and table.get("enabled", True) is not False


def task_context(federation: str, run: str, round_: int, attempt: int, seed: int | None = None) -> dict[str, Any]:
    """``config["task"]``. Its ``seed`` (the training seed) is fresh from the CSPRNG, or, for a
    seeded client (``[client] seed``), derived from that seed, the federation, round and attempt --
    not the run id, so that two runs of one seeded federation train alike."""
    drawn = secrets.randbits(63) if seed is None else derived_seed(seed, f"train/{federation}/{round_}/{attempt}")
    return {"federation": federation, "run": run, "round": int(round_), "attempt": int(attempt), "seed": drawn}


def derived_seed(seed: int, label: str) -> int:
    """A 63-bit seed for ``label`` derived from a client's ``[client] seed`` (SHA-256; reproducible,
    not secret: seeded runs are for benchmarks and tests)."""
    import hashlib

    digest = hashlib.sha256(f"fedpsyau/client-seed/v1/{int(seed)}/{label}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def ledger_for(table: Mapping[str, Any], workdir: Path):
    """The client's ledger as its ``[privacy]`` table describes it (path, accountant, delta, target)."""
    from fedcore.dp.accounting import DEFAULT_ACCOUNTANT
    from fedcore.dp.config import DEFAULT_DELTA
    from fedcore.dp.ledger import PrivacyLedger

    path = table.get("ledger")
    path = Path(workdir) / "privacy_ledger.json" if not path else Path(str(path)).expanduser()
    path = path if path.is_absolute() else Path(workdir) / path
    delta = table.get("delta")
    return PrivacyLedger.open(
        path,
        accountant=table.get("accountant", DEFAULT_ACCOUNTANT),
        delta=DEFAULT_DELTA if delta is None else float(delta),
        target_epsilon=table.get("target_epsilon"),
        workdir=workdir,
    )


def statistics_release(
    vec, table: Mapping[str, Any], mode, sensitivity: float | None, rng=None
) -> tuple[Any, dict[str, float] | None]:
    """The vector this client hands its mode for round 0, and the noise record to charge (None: DP off).

    ``mode`` is the client's :class:`~fedcore.common.aggregation.ClientMode`; ``sensitivity`` the
    workload's stated L2 sensitivity (None: sqrt(length), one sample moving each count by <= 1).
    """
    import numpy as np

    if not dp_enabled(table):
        return vec, None
    vec = np.asarray(vec, np.float64)
    own = mode.statistics_noise(vec.size)
    if own is not None:
        return vec, own
    from fedcore.dp.config import DEFAULT_DELTA
    from fedcore.dp.discrete import sample_discrete_gaussian
    from fedcore.secagg.stats_noise import sigma_for_epsilon

    sens = float(sensitivity) if sensitivity else math.sqrt(vec.size)
    delta = float(table.get("delta") or DEFAULT_DELTA)
    try:
        total = sigma_for_epsilon(float(table.get("statistics_epsilon", 1.0)), delta, sens)
    except (TypeError, ValueError) as exc:
        raise StatisticsRefused(f"[privacy] statistics_epsilon / delta: {exc}") from None
    cover = max(1, int(mode.statistics_cover()))
    noise = sample_discrete_gaussian(total / math.sqrt(cover), vec.size, rng)  # secure RNG unless a test passes one
    log.info(
        "statistics release: discrete Gaussian noise of std %.4g per count added here (%s mode adds none; "
        "any visible value sums >= %d clients)",
        total / math.sqrt(cover),
        mode.name or "this",
        cover,
    )
    return vec + noise, {"sigma": total, "sensitivity": sens, "delta": delta}


def charge_statistics(
    table: Mapping[str, Any], config: Mapping[str, Any], workdir: Path, federation: str, run: str, attempt: int
) -> float | None:
    """Charge the ledger for this statistics release (see the module docstring); epsilon spent after it.

    Returns None when the release is not charged (DP off, or no noise parameters: not private,
    logged). Raises :class:`StatisticsRefused` when the charge would pass the budget or the ledger
    cannot be trusted.
    """
    from fedcore.dp.ledger import ChargeKey, LedgerError
    from fedcore.dp.statistics import statistics_epsilon, statistics_noise_multiplier

    if not dp_enabled(table):
        log.warning(
            "statistics release (round 0 attempt %d): DP is off, so these statistics are NOT private "
            "(the aggregate of the clients' exact counts is released)",
            attempt,
        )
        return None
    found = config.get("statistics_noise")
    noise: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
    sigma = noise.get("sigma")
    if not (isinstance(sigma, int | float) and not isinstance(sigma, bool) and sigma > 0):
        log.warning(
            "statistics release (round 0 attempt %d): DP is on but the task carries no statistics noise "
            "(statistics_noise.sigma); this release is NOT differentially private and is not charged",
            attempt,
        )
        return None
    try:
        multiplier = statistics_noise_multiplier(float(sigma), float(noise.get("sensitivity", math.nan)))
        alone = statistics_epsilon(float(sigma), float(noise["sensitivity"]), float(noise.get("delta", 1e-5)))
    except (TypeError, ValueError) as exc:
        raise StatisticsRefused(f"statistics_noise must carry sigma > 0, sensitivity > 0 and delta in (0, 1): {exc}")
    try:
        ledger = ledger_for(table, workdir)
        if ledger.would_exceed(1.0, multiplier, 1):
            raise StatisticsRefused(
                f"privacy budget exhausted: the statistics release would bring epsilon to "
                f"{ledger.would_spend(1.0, multiplier, 1):.4g}, above target {ledger.target_epsilon:g}"
            )
        spent = ledger.charge_statistics(ChargeKey(federation, run, 0, int(attempt), "statistics"), multiplier)
    except LedgerError as exc:
        raise StatisticsRefused(f"privacy ledger: {exc}") from None
    log.info(
        "statistics release (round 0 attempt %d): charged as a Gaussian mechanism, sigma %.4g, sensitivity "
        "%.4g (epsilon %.4g alone); ledger epsilon now %.4g",
        attempt,
        sigma,
        noise["sensitivity"],
        alone,
        spent,
    )
    return spent


def trim_report(
    privacy: PrivacyState | None, metrics: Mapping[str, float], report_steps: bool, what: str
) -> tuple[PrivacyState | None, dict[str, float]]:
    """The privacy state and metrics as they may leave the client (see the module docstring)."""
    if report_steps:
        return privacy, dict(metrics)
    kept = {k: v for k, v in metrics.items() if k not in STEP_METRICS}
    if privacy is None:
        return None, kept
    if privacy.steps or privacy.noise_multiplier:
        log.info(
            "%s: steps %d and noise multiplier %.4g stay local (they reveal n; set [privacy] report_steps = "
            "true to report them)",
            what,
            privacy.steps,
            privacy.noise_multiplier,
        )
    trimmed = PrivacyState(
        privacy.enabled,
        privacy.epsilon,
        privacy.delta,
        privacy.accountant,
        0,
        0.0,
        privacy.target_epsilon,
        privacy.exhausted,
    )
    return trimmed, kept
