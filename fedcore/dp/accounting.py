r"""Privacy accounting for DP-SGD: pure functions over histories of subsampled Gaussian steps.

A *segment* is ``(sample_rate q, noise_multiplier sigma, steps T)``: T steps of the Poisson
subsampled Gaussian mechanism (each record enters a batch with probability q; the summed
clipped gradients get N(0, sigma^2 C^2) noise). A client's history is a list of segments (one
per round); the records are the client's, so segments compose sequentially.

Accountants (Opacus 1.6 does the numerics):

``prv`` (tight, the default) and ``rdp`` (robust; the option and the cross-check). Renyi DP of the subsampled Gaussian (Mironov, Talwar, Zhang 2019,
arXiv 1908.10530), for integer alpha

    eps_{q,sigma}(alpha) = 1/(alpha-1) log sum_{k=0}^{alpha} C(alpha,k) (1-q)^{alpha-k} q^k
                           exp((k^2 - k) / (2 sigma^2)),

with a series for fractional alpha. RDP adds up under composition (Mironov 2017, Prop. 1):

    eps_total(alpha) = sum_i T_i eps_{q_i,sigma_i}(alpha),

and converts to (eps, delta)-DP (Balle et al. 2020, Thm 21; as Opacus does):

    eps = min_alpha [ eps_total(alpha) + log((alpha-1)/alpha) - (log delta + log alpha)/(alpha-1) ].

``prv`` (the default; tighter by 5-10 %). Numerical composition of privacy loss random variables
(Gopi, Lee, Wutschitz 2021, arXiv 2106.02848): discretise each PRV on a common grid, convolve by
FFT, read off an upper bound on eps (error <= 0.01 in eps). It can fail to discretise (the safe
domain explodes for small sigma / large q, and then it takes minutes and returns inf).
:func:`account` checks the grid size first and, when PRV cannot run, falls back to Google's
``dp_accounting`` privacy-loss-distribution accountant (``pld``, pessimistic estimate, an upper
bound as well) when that package is installed, else to RDP; the fallback is logged and the
result names the accountant actually used. A failing accountant never raises out of
:func:`account`: RDP always answers.

Results are cached per (history, delta, accountant): a ledger asks for the same history before
and after every round.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from opacus.accountants import RDPAccountant
from opacus.accountants.analysis import rdp as rdp_analysis
from opacus.accountants.analysis.prv import (
    Domain,
    PoissonSubsampledGaussianPRV,
    TruncatedPrivacyRandomVariable,
    compose_heterogeneous,
    compute_safe_domain_size,
    discretize,
)

__all__ = [
    "ACCOUNTANTS",
    "DEFAULT_ACCOUNTANT",
    "RDP_ORDERS",
    "EpsilonResult",
    "PRVFailure",
    "Segment",
    "account",
    "compose",
    "derive_noise_multiplier",
    "epsilon",
    "pld_epsilon",
    "prv_epsilon",
    "rdp_epsilon",
]

logger = logging.getLogger(__name__)

from .names import ACCOUNTANTS, DEFAULT_ACCOUNTANT  # noqa: E402 (light; re-exported)

#: Opacus's default orders plus a few large ones (tighter for small epsilon; never looser).
RDP_ORDERS: tuple[float, ...] = tuple(RDPAccountant.DEFAULT_ALPHAS) + (
    72.0,
    96.0,
    128.0,
    192.0,
    256.0,
    512.0,
)
#: Above this many grid points PRV is slow (about 1 s per 1e6) and usually fails: use RDP.
PRV_MAX_GRID_POINTS = 4_000_000
_PRV_EPS_ERROR = 0.01
#: Above this RDP epsilon a failed PRV is not retried with PLD (its grid would be huge; nothing to tighten).
_PLD_MAX_EPSILON = 1e4
_MAX_SIGMA = 1e6


class Segment(NamedTuple):
    """``steps`` DP-SGD steps at Poisson rate ``sample_rate`` with ``noise_multiplier``."""

    sample_rate: float
    noise_multiplier: float
    steps: int


@dataclass(frozen=True)
class EpsilonResult:
    """Epsilon spent, with what it needs to be read: delta, accountant used, total steps."""

    epsilon: float
    delta: float
    accountant: str  # the accountant that produced ``epsilon`` (after any fallback)
    steps: int
    note: str | None = None  # why a fallback happened, if one did


class PRVFailure(RuntimeError):
    """The PRV accountant cannot discretise this history (use RDP instead)."""


def _check_segment(seg: Segment) -> Segment:
    q, sigma, steps = float(seg[0]), float(seg[1]), seg[2]
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"sample_rate must be in [0, 1] (got {q})")
    if not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"noise_multiplier must be a finite number > 0 (got {sigma})")
    if isinstance(steps, bool) or int(steps) != steps or steps < 0:
        raise ValueError(f"steps must be an integer >= 0 (got {steps!r})")
    return Segment(q, sigma, int(steps))


def _check_delta(delta: float) -> float:
    delta = float(delta)
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1) (got {delta})")
    return delta


def compose(segments: Iterable[Segment | tuple[float, float, int]]) -> list[Segment]:
    """Validate a history and merge segments with equal (q, sigma), dropping zero-step ones.

    Composition is commutative, so merging is exact; it keeps PRV at one discretisation per
    distinct mechanism (50 separate rounds would take ~50x longer).
    """
    merged: dict[tuple[float, float], int] = {}
    for raw in segments:
        seg = _check_segment(Segment(*raw))
        if seg.steps:
            key = (seg.sample_rate, seg.noise_multiplier)
            merged[key] = merged.get(key, 0) + seg.steps
    return [Segment(q, s, t) for (q, s), t in merged.items()]


@functools.lru_cache(maxsize=4096)
def _rdp_one_step(q: float, sigma: float, orders: tuple[float, ...]) -> tuple[float, ...]:
    """RDP of one subsampled Gaussian step at each order (cached: the fractional orders are slow)."""
    return tuple(rdp_analysis.compute_rdp(q=q, noise_multiplier=sigma, steps=1, orders=list(orders)))


def rdp_epsilon(segments: Sequence[Segment], delta: float, orders: Sequence[float] = RDP_ORDERS) -> float:
    """Epsilon of a history by RDP composition and the Balle et al. conversion (see module doc)."""
    delta = _check_delta(delta)
    history = compose(segments)
    if not history:
        return 0.0
    total = np.zeros(len(orders))
    for seg in history:
        total += seg.steps * np.asarray(_rdp_one_step(seg.sample_rate, seg.noise_multiplier, tuple(orders)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "optimal order is the smallest alpha": eps is huge anyway
        eps, _ = rdp_analysis.get_privacy_spent(orders=list(orders), rdp=total, delta=delta)
    return float(eps)


def prv_epsilon(segments: Sequence[Segment], delta: float) -> float:
    """Upper bound on epsilon by PRV composition (Gopi et al. 2021); raises :class:`PRVFailure`.

    Mirrors Opacus's PRVAccountant (eps_error 0.01, delta_error delta/1000) but sizes the grid
    first and refuses grids above :data:`PRV_MAX_GRID_POINTS`.
    """
    delta = _check_delta(delta)
    history = compose(segments)
    if not history:
        return 0.0
    delta_error = delta / 1000
    prvs = [PoissonSubsampledGaussianPRV(s.sample_rate, s.noise_multiplier) for s in history]
    counts = [s.steps for s in history]
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half_width = compute_safe_domain_size(
            prvs=prvs, max_self_compositions=counts, eps_error=_PRV_EPS_ERROR, delta_error=delta_error
        )
        mesh = _PRV_EPS_ERROR / math.sqrt(sum(counts) * math.log(12 / delta_error) / 2)
        points = 2 * half_width / mesh
        if not math.isfinite(points) or points > PRV_MAX_GRID_POINTS:
            raise PRVFailure(
                f"PRV needs {points:.3g} grid points (limit {PRV_MAX_GRID_POINTS:.3g}) for "
                f"{[tuple(s) for s in history]}"
            )
        domain = Domain.create_aligned(-half_width, half_width, mesh)
        dprvs = [discretize(TruncatedPrivacyRandomVariable(p, domain.t_min, domain.t_max), domain) for p in prvs]
        composed = compose_heterogeneous(dprvs=dprvs, num_self_compositions=counts)
        _, _, eps_upper = composed.compute_epsilon(delta, delta_error, _PRV_EPS_ERROR)
    if not math.isfinite(eps_upper) or eps_upper < 0:
        raise PRVFailure(f"PRV returned epsilon {eps_upper} for {[tuple(s) for s in history]}")
    return float(eps_upper)


def pld_epsilon(segments: Sequence[Segment], delta: float, discretization: float = 1e-3) -> float:
    """Upper bound on epsilon from Google's ``dp_accounting`` PLD accountant (pessimistic estimate).

    Raises ImportError when ``dp_accounting`` is not installed (it is a test extra of fedpsyau).
    """
    from dp_accounting import dp_event
    from dp_accounting.pld import pld_privacy_accountant

    delta = _check_delta(delta)
    history = compose(segments)
    if not history:
        return 0.0
    acc = pld_privacy_accountant.PLDAccountant(value_discretization_interval=discretization)
    for s in history:
        gaussian = dp_event.GaussianDpEvent(s.noise_multiplier)
        event = gaussian if s.sample_rate >= 1.0 else dp_event.PoissonSampledDpEvent(s.sample_rate, gaussian)
        acc.compose(dp_event.SelfComposedDpEvent(event, s.steps))
    return float(acc.get_epsilon(delta))


@functools.lru_cache(maxsize=1024)
def _account_cached(history: tuple[Segment, ...], delta: float, accountant: str) -> EpsilonResult:
    steps = sum(s.steps for s in history)
    if accountant == "prv":
        try:
            return EpsilonResult(prv_epsilon(history, delta), delta, "prv", steps)
        except PRVFailure as exc:
            rdp = rdp_epsilon(history, delta)
            if rdp > _PLD_MAX_EPSILON:  # PLD's grid grows with the privacy loss: no point, and it can exhaust memory
                note = f"PRV accountant failed ({exc}); epsilon is huge (RDP {rdp:.4g}): reported by RDP"
                logger.warning(note)
                return EpsilonResult(rdp, delta, "rdp", steps, note)
            try:
                eps = pld_epsilon(history, delta)
            except ImportError:
                note = f"PRV accountant failed ({exc}); dp_accounting is not installed; fell back to RDP"
                logger.warning(note)
                return EpsilonResult(rdp, delta, "rdp", steps, note)
            except Exception as pld_exc:  # noqa: BLE001 - never crash a client over accounting: RDP answers
                note = f"PRV accountant failed ({exc}); PLD failed too ({type(pld_exc).__name__}); fell back to RDP"
                logger.warning(note)
                return EpsilonResult(rdp, delta, "rdp", steps, note)
            note = f"PRV accountant failed ({exc}); fell back to dp_accounting's PLD"
            logger.warning(note)
            return EpsilonResult(min(eps, rdp), delta, "pld", steps, note)
    return EpsilonResult(rdp_epsilon(history, delta), delta, "rdp", steps)


def account(
    segments: Iterable[Segment | tuple[float, float, int]], delta: float, accountant: str = "rdp"
) -> EpsilonResult:
    """Epsilon of a history with ``accountant`` ("prv" or "rdp"; a failing PRV falls back, logged).

    The pure functions default to "rdp" (their historical default); the client's configured
    accountant (:class:`~fedcore.dp.config.PrivacyConfig`, "prv" by default) is what plans and ledgers use.
    """
    if accountant not in ACCOUNTANTS:
        raise ValueError(f"accountant must be one of {', '.join(ACCOUNTANTS)} (got {accountant!r})")
    history = tuple(sorted(compose(segments)))
    return _account_cached(history, _check_delta(delta), accountant)


def epsilon(sample_rate: float, noise_multiplier: float, steps: int, delta: float, accountant: str = "rdp") -> float:
    """Epsilon after ``steps`` steps at rate ``sample_rate`` and ``noise_multiplier``."""
    return account([Segment(sample_rate, noise_multiplier, steps)], delta, accountant).epsilon


def derive_noise_multiplier(
    sample_rate: float,
    steps: int,
    target_epsilon: float,
    delta: float,
    accountant: str = "rdp",
    *,
    prior: Sequence[Segment] = (),
    tolerance: float = 0.01,
) -> float:
    """Smallest noise multiplier (within ``tolerance`` in epsilon) keeping a run within budget.

    Finds sigma with eps(prior + [(sample_rate, sigma, steps)]) <= target_epsilon by bracketing
    (doubling) and bisection; epsilon falls monotonically in sigma. The result always satisfies
    the target; it exceeds the minimal sigma by at most what ``tolerance`` in epsilon allows.

    Args:
        sample_rate: Poisson rate q of the planned steps.
        steps: all planned steps (planned_rounds * local_epochs * steps_per_epoch).
        target_epsilon: the budget, > 0.
        delta: the run's delta.
        accountant: "rdp" or "prv".
        prior: already spent history (e.g. from a ledger), composed with the plan.
        tolerance: accepted gap target - eps(sigma) in epsilon units.

    Raises:
        ValueError: the budget is already spent by ``prior`` or unreachable below sigma = 1e6.
    """
    if not (math.isfinite(target_epsilon) and target_epsilon > 0):
        raise ValueError(f"target_epsilon must be a finite number > 0 (got {target_epsilon})")
    prior = compose(prior)

    def eps_at(sigma: float) -> float:
        return account([*prior, Segment(sample_rate, sigma, steps)], delta, accountant).epsilon

    if prior and account(prior, delta, accountant).epsilon >= target_epsilon:
        raise ValueError(f"the prior history already spends epsilon >= target {target_epsilon}")
    low, high = 0.0, 1.0
    if accountant != "rdp":
        # RDP is an upper bound on the tight accountants: its sigma meets the target, bisect below it
        high = derive_noise_multiplier(
            sample_rate, steps, target_epsilon, delta, "rdp", prior=prior, tolerance=tolerance
        )
        low = 0.5 * high
        if eps_at(low) <= target_epsilon:
            low = 0.0
    eps_high = eps_at(high)
    while eps_high > target_epsilon:
        low, high = high, 2.0 * high
        if high > _MAX_SIGMA:
            raise ValueError(
                f"target_epsilon {target_epsilon} is unreachable with noise_multiplier <= {_MAX_SIGMA:g} "
                f"(sample_rate {sample_rate}, steps {steps}, delta {delta})"
            )
        eps_high = eps_at(high)
    while target_epsilon - eps_high > tolerance and high - low > 1e-6 * high:
        mid = 0.5 * (low + high)
        eps_mid = eps_at(mid)
        if eps_mid <= target_epsilon:
            high, eps_high = mid, eps_mid
        else:
            low = mid
    return high
