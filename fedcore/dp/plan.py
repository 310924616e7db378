"""Resolve a :class:`~fedcore.dp.config.PrivacyConfig` against a client's sample count.

Before round one a client calls :func:`plan_privacy` with its number of training examples n:

- delta: the configured one or, by default, the public constant 1e-5 (it must be < 1/n: a delta
  of 1/n allows releasing a whole record; a default that depended on n would reveal n);
- Poisson sampling as Opacus does it: steps_per_epoch = ceil(n / batch_size), sample rate
  q = 1 / steps_per_epoch (each record joins each batch with probability q);
- planned steps = planned_rounds * local_epochs * steps_per_epoch;
- the noise multiplier: the configured one, or the smallest that keeps the whole planned run
  within target_epsilon (:func:`~fedcore.dp.accounting.derive_noise_multiplier`), planned with
  the configured accountant (PRV by default). The plan also computes the RDP epsilon of the same
  run as a cross-check and logs both (``planned_epsilon`` and ``planned_epsilon_rdp``).

The result is a deterministic function of (config, n), so a restarted client derives the same
noise; the :class:`~fedcore.dp.ledger.PrivacyLedger` enforces the budget across restarts.
"""

from __future__ import annotations

import logging
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

from .accounting import Segment, account, derive_noise_multiplier
from .config import DEFAULT_DELTA, PrivacyConfig, PrivacyConfigError
from .ledger import PrivacyLedger

__all__ = ["PrivacyPlan", "default_delta", "open_ledger", "plan_privacy"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PrivacyPlan:
    """Everything DP-SGD and the ledger need for one client, resolved for its n."""

    num_examples: int
    batch_size: int
    steps_per_epoch: int
    sample_rate: float
    steps_per_round: int
    planned_rounds: int
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    accountant: str
    target_epsilon: float | None
    planned_epsilon: float  # epsilon after all planned rounds at this noise multiplier
    derived: bool  # True if noise_multiplier was derived from target_epsilon
    planned_epsilon_rdp: float | None = None  # the same run by RDP (cross-check; None if RDP is the accountant)
    planned_accountant: str | None = None  # accountant that produced planned_epsilon (after any fallback)

    def open_ledger(self, path: str | os.PathLike, *, workdir: str | os.PathLike | None = None) -> PrivacyLedger:
        """The client's ledger at ``path`` with this plan's accountant, delta and target.

        ``workdir`` (default: the ledger's folder) is checked for earlier training, so that a
        missing or replaced ledger is refused rather than restarted at zero
        (:mod:`fedcore.dp.ledger_guard`). Pass the client's workdir when the ledger is shared.
        """
        return open_ledger(self, path, workdir=workdir)

    def fits(self, ledger: PrivacyLedger, round: int) -> bool:
        """True if one more round per this plan (``round``) stays within the ledger's budget.

        A client asks this before training and, if False, tells the coordinator it is exhausted
        instead of training (:func:`~fedcore.dp.opacus_train.dp_train` would raise
        :class:`~fedcore.dp.ledger.BudgetExhausted`).
        """
        return not ledger.would_exceed(self.sample_rate, self.noise_multiplier, self.steps_per_round, round=round)

    @property
    def planned_steps(self) -> int:
        return self.planned_rounds * self.steps_per_round

    def summary(self) -> str:
        """One line for the client's start-up log."""
        how = "derived" if self.derived else "configured"
        target = "none" if self.target_epsilon is None else f"{self.target_epsilon:g}"
        return (
            f"DP-SGD plan: n={self.num_examples} batch={self.batch_size} q={self.sample_rate:.5g} "
            f"steps/round={self.steps_per_round} rounds={self.planned_rounds} "
            f"noise_multiplier={self.noise_multiplier:.4g} ({how}) clip={self.max_grad_norm:g} "
            f"delta={self.delta:.3g} target_epsilon={target} planned_epsilon={self.planned_epsilon:.4g} "
            f"accountant={self.planned_accountant or self.accountant}"
            + ("" if self.planned_epsilon_rdp is None else f" (rdp cross-check {self.planned_epsilon_rdp:.4g})")
        )


def default_delta(num_examples: int | None = None) -> float:
    """The public default delta, 1e-5, whatever n (``num_examples`` is accepted and ignored, so that
    the delta a client reports does not reveal its n). :func:`plan_privacy` refuses it when
    1e-5 >= 1/n: such a client (n >= 100000) must set its own smaller delta."""
    return DEFAULT_DELTA


def plan_privacy(config: PrivacyConfig, num_examples: int, *, prior: Sequence[Segment] = ()) -> PrivacyPlan:
    """Resolve ``config`` for a client holding ``num_examples`` training records.

    ``prior``: what the client's ledger already holds (the round-0 statistics release, an earlier
    federation on the same data); a derived noise multiplier fits the planned steps into what is
    left of ``target_epsilon`` after it, and the planned epsilon includes it.

    Raises:
        PrivacyConfigError: DP is disabled, n < 1, or the configured delta is >= 1/n.
        ValueError: target_epsilon cannot be met with any noise multiplier <= 1e6.
    """
    if not config.enabled:
        raise PrivacyConfigError(["enabled: plan_privacy needs DP enabled (got enabled = false)"])
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise PrivacyConfigError([f"num_examples: expected an integer >= 1 (got {num_examples!r})"])
    n = num_examples
    delta = config.resolved_delta
    if delta >= 1.0 / n:
        what = "" if config.delta is not None else " (the public default; set a smaller delta in [privacy])"
        raise PrivacyConfigError(
            [f"delta: must be < 1/n = {1.0 / n:.3g} for this client's n = {n} records (got {delta:g}{what})"]
        )
    steps_per_epoch = math.ceil(n / config.batch_size)
    sample_rate = 1.0 / steps_per_epoch
    steps_per_round = config.local_epochs * steps_per_epoch
    planned_steps = config.planned_rounds * steps_per_round
    derived = config.noise_multiplier is None
    if config.noise_multiplier is not None:
        sigma = config.noise_multiplier
    elif config.target_epsilon is not None:
        sigma = derive_noise_multiplier(
            sample_rate, planned_steps, config.target_epsilon, delta, config.accountant, prior=tuple(prior)
        )
    else:  # PrivacyConfig refuses this already; the same problem if a config got here without its checks
        raise PrivacyConfigError(
            ["target_epsilon or noise_multiplier: DP is enabled but neither is set (set at least one)"]
        )
    planned_result = account([*prior, (sample_rate, sigma, planned_steps)], delta, config.accountant)
    planned = planned_result.epsilon
    rdp = None if config.accountant == "rdp" else account([(sample_rate, sigma, planned_steps)], delta, "rdp").epsilon
    plan = PrivacyPlan(
        num_examples=n,
        batch_size=config.batch_size,
        steps_per_epoch=steps_per_epoch,
        sample_rate=sample_rate,
        steps_per_round=steps_per_round,
        planned_rounds=config.planned_rounds,
        delta=delta,
        noise_multiplier=sigma,
        max_grad_norm=config.max_grad_norm,
        accountant=config.accountant,
        target_epsilon=config.target_epsilon,
        planned_epsilon=planned,
        derived=derived,
        planned_epsilon_rdp=rdp,
        planned_accountant=planned_result.accountant,
    )
    if config.target_epsilon is not None and planned > config.target_epsilon:
        message = (
            f"noise_multiplier {sigma:g} spends epsilon {planned:.3g} over the {config.planned_rounds} "
            f"planned rounds, above target_epsilon {config.target_epsilon:g}: the client will stop "
            "training when its budget runs out"
        )
        warnings.warn(message, stacklevel=2)
        logger.warning(message)
    if config.batch_size >= n:
        logger.warning("batch_size %d >= n = %d: q = 1, no privacy amplification by sampling", config.batch_size, n)
    logger.info(plan.summary())
    return plan


def plan_and_open(
    config: PrivacyConfig, num_examples: int, path: str | os.PathLike, *, workdir: str | os.PathLike | None = None
) -> tuple[PrivacyPlan, PrivacyLedger]:
    """The plan for the budget the ledger at ``path`` has left, and that ledger (opened, checked).

    A derived noise multiplier is planned over the ledger's charges so far plus this run's planned
    steps, so a run whose round-0 statistics release is already charged (or a second federation on
    the same data) still ends within ``target_epsilon`` instead of being stopped before its last
    rounds. A client restarted mid-run re-plans over its own earlier rounds too: more noise than
    needed for the rounds left, never less.
    """
    plan = plan_privacy(config, num_examples)
    ledger = plan.open_ledger(path, workdir=workdir)
    prior = [c.segment for c in ledger.charges]
    if prior and plan.derived:
        plan = plan_privacy(config, num_examples, prior=prior)
    return plan, ledger


def open_ledger(
    plan: PrivacyPlan, path: str | os.PathLike, *, workdir: str | os.PathLike | None = None
) -> PrivacyLedger:
    """Open (or start) the client's ledger at ``path`` with the plan's accountant, delta and target,
    checked against ``workdir`` (default: the ledger's folder; see :meth:`PrivacyPlan.open_ledger`)."""
    from pathlib import Path

    return PrivacyLedger.open(
        path,
        accountant=plan.accountant,
        delta=plan.delta,
        target_epsilon=plan.target_epsilon,
        workdir=Path(path).parent if workdir is None else workdir,
    )
