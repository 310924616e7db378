r"""SecAgg+ parameters for a stated corruption and dropout fraction (Bell et al., CCS 2020, Sec. 3-4).

Pure functions, no state. The masking graph (:mod:`.graph`) is a Harary graph H(n, k) on a
uniformly random ordering of the n clients: each client is joined to its k/2 nearest clients on
either side of a circle. Every client i splits its two secrets (self-mask seed b_i, mask secret key
s_i) t-out-of-(k + 1) among its k neighbours and itself.

Model (semi-honest, as the paper's Sec. 3): the adversary controls the server and a set C of
c = floor(gamma n) clients; a set D of at most d = floor(delta n) clients drops out. Both are fixed
*before* the server draws the graph seed (an honest-but-curious server draws it with os.urandom
after every key is advertised; a coalition of clients cannot predict it). The round is safe when,
for the graph drawn,

1. (no reconstruction) every honest client has fewer than t corrupt neighbours,
   |N(i) cap C| < t: otherwise the coalition holds t shares of s_i, and with the b_i the server
   rebuilds at unmask it removes every mask of i's input;
2. (correctness) every client keeps at least t share holders that do not drop,
   |N(i) \ D| >= t, so the sum can be unmasked;
3. (connectivity) the graph minus C cup D is connected, so the server learns only the sum over all
   honest survivors, never a partial sum.

Bounds (exact tails, union bound). For a fixed client i, the random ordering makes N(i) a uniform
k-subset of the other n - 1 clients, so |N(i) cap S| for a fixed set S of s others is
hypergeometric, HG(n - 1, s, k):

.. math::

   P[HG(N, K, m) >= j] = \sum_{x >= j} \binom{K}{x} \binom{N - K}{m - x} / \binom{N}{m}

   p_1 = (n - c) \, P[HG(n - 1, c, k) >= t]                  (honest i, corrupt neighbours)

   p_2 = n \, P[HG(n - 1, d, k) >= k - t + 1]               (fewer than t of i's neighbours survive;
                                                             i itself not counted, so also for dropped i)

   p_3 = n \, \binom{b}{h} / \binom{n}{h},  h = k/2,  b = c + d   (some run of h consecutive places on
                                                             the circle all in C cup D; without one,
                                                             consecutive remaining clients are at most
                                                             h apart, hence adjacent, and the rest is
                                                             connected)

and P[unsafe] <= p_1 + p_2 + p_3. :func:`plan` picks the smallest even k (and for it the t that
minimises the bound) with bound <= 2^-sigma (sigma = 40 by default), keeping t a strict majority of
the k + 1 holders (so that even a server that broke protocol could not collect t shares of both
kinds for one client from disjoint holders); when no sparse k qualifies it falls back to the
complete graph (the original SecAgg), where t = T and condition 1 holds deterministically when
c < T. It raises ValueError when even that cannot hold (c >= T).

The search runs in floating point (log-gamma); the chosen (k, t) is then re-checked with exact
integer arithmetic (:func:`exact_failure_bound`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

#: the failure probability targeted by default: 2^-40 (Bell et al. use sigma = 40)
DEFAULT_SIGMA = 40


@dataclass(frozen=True)
class GraphPlan:
    """The masking graph and share threshold of one round, with the bound they were chosen under."""

    n: int
    k: int  # degree; n - 1 = complete graph
    t: int  # Shamir threshold among the k + 1 holders (T for the complete graph)
    corrupt: int  # c = floor(gamma n)
    dropouts: int  # d = floor(delta n)
    bound: float  # P[unsafe] <= bound (0.0: holds deterministically)
    sigma: int

    @property
    def complete(self) -> bool:
        return self.k >= self.n - 1

    def describe(self) -> str:
        kind = "complete graph" if self.complete else "sparse Harary graph"
        return (
            f"{kind} k={self.k}, share threshold t={self.t} for n={self.n}, up to {self.corrupt} colluding and "
            f"{self.dropouts} dropped clients: P[unsafe] <= {self.bound:.3g} (target 2^-{self.sigma})"
        )


def corrupt_count(gamma: float, n: int) -> int:
    return math.floor(gamma * n + 1e-9)


def _log_hg_pmf(N: int, K: int, m: int) -> np.ndarray:
    """log P[HG(N, K, m) = x] for x = 0..m (-inf where impossible)."""
    x = np.arange(m + 1)
    ok = (x <= K) & (m - x <= N - K)
    out = np.full(m + 1, -np.inf)
    xs = x[ok].astype(np.float64)
    lg = np.vectorize(math.lgamma, otypes=[np.float64])
    out[ok] = (
        lg(K + 1)
        - lg(xs + 1)
        - lg(K - xs + 1)
        + lg(N - K + 1)
        - lg(m - xs + 1)
        - lg(N - K - m + xs + 1)
        - (math.lgamma(N + 1) - math.lgamma(m + 1) - math.lgamma(N - m + 1))
    )
    return out


def _survival(log_pmf: np.ndarray) -> np.ndarray:
    """sf[j] = P[X >= j] for j = 0..m+1 (floating point)."""
    pmf = np.exp(log_pmf)
    return np.concatenate([np.cumsum(pmf[::-1])[::-1], [0.0]])


def _run_bound(n: int, bad: int, h: int) -> float:
    """n C(bad, h) / C(n, h): some run of h consecutive circle places all bad."""
    if h > bad:
        return 0.0
    return n * math.exp(math.lgamma(bad + 1) - math.lgamma(bad - h + 1) - math.lgamma(n + 1) + math.lgamma(n - h + 1))


def majority(k: int) -> int:
    """The smallest strict majority of the k + 1 share holders."""
    return (k + 1) // 2 + 1


def best_threshold(n: int, k: int, c: int, d: int) -> tuple[int, float]:
    """(t, bound) minimising p_1 + p_2 + p_3 over t in [majority(k), k + 1] for a sparse k (floats)."""
    sf_c = _survival(_log_hg_pmf(n - 1, c, k))
    sf_d = _survival(_log_hg_pmf(n - 1, d, k))
    ts = np.arange(majority(k), k + 2)
    p1 = (n - c) * sf_c[np.minimum(ts, k + 1)]
    p2 = n * sf_d[np.clip(k - ts + 1, 0, k + 1)]
    total = p1 + p2 + _run_bound(n, c + d, k // 2)
    i = int(np.argmin(total))
    return int(ts[i]), float(total[i])


def _exact_sf(N: int, K: int, m: int, j: int) -> Fraction:
    j = max(j, 0)
    num = sum(math.comb(K, x) * math.comb(N - K, m - x) for x in range(j, min(K, m) + 1))
    return Fraction(num, math.comb(N, m))


def exact_failure_bound(n: int, k: int, t: int, c: int, d: int) -> Fraction:
    """p_1 + p_2 + p_3 of the module docstring, in exact rational arithmetic, for a sparse k."""
    p1 = (n - c) * _exact_sf(n - 1, c, k, t)
    p2 = n * _exact_sf(n - 1, d, k, k - t + 1)
    h, bad = k // 2, c + d
    p3 = Fraction(n * math.comb(bad, h), math.comb(n, h)) if h <= bad else Fraction(0)
    return p1 + p2 + p3


def check_sparse(n: int, k: int, t: int, c: int, d: int, sigma: int = DEFAULT_SIGMA) -> float:
    """The exact bound for (k, t) as a float; ValueError naming the bound when it exceeds 2^-sigma."""
    if not 2 <= k < n - 1 or k % 2:
        raise ValueError(f"a sparse degree is even and in [2, {n - 2}] for n={n} (got {k})")
    if not majority(k) <= t <= k + 1:
        raise ValueError(
            f"the share threshold must be a strict majority of the {k + 1} holders, "
            f"in [{majority(k)}, {k + 1}] (got {t})"
        )
    bound = exact_failure_bound(n, k, t, c, d)
    if bound > Fraction(1, 2**sigma):
        raise ValueError(
            f"k={k}, t={t} for n={n} with {c} colluding and {d} dropped clients: P[unsafe] <= "
            f"{float(bound):.3g}, above the 2^-{sigma} target; use k='auto' or k='all'"
        )
    return float(bound)


def complete_plan(n: int, T: int, c: int, d: int, sigma: int = DEFAULT_SIGMA) -> GraphPlan:
    """The complete graph with t = T; ValueError when c >= T (the coalition alone holds T shares)."""
    if c >= T:
        raise ValueError(
            f"{c} colluding clients (gamma n) reach the threshold T={T} for n={n}: no masking graph "
            f"keeps their inputs private; raise threshold or lower gamma"
        )
    return GraphPlan(n, n - 1, T, c, d, 0.0, sigma)


@functools.lru_cache(maxsize=256)
def plan(n: int, T: int, gamma: float, delta: float, k: int | str = "auto", sigma: int = DEFAULT_SIGMA) -> GraphPlan:
    """The round's (k, t) for n participants, survivor threshold T and fractions (gamma, delta).

    ``k``: ``"auto"`` (the smallest sparse k meeting 2^-sigma, else complete), ``"all"`` (complete),
    or an even integer (checked against the bound; ValueError if it misses it; >= n - 1: complete).
    """
    if not 0 <= gamma < 1 or not 0 <= delta < 1 or gamma + delta >= 1:
        raise ValueError(f"gamma and delta must be fractions in [0, 1) with gamma + delta < 1 (got {gamma}, {delta})")
    c, d = corrupt_count(gamma, n), corrupt_count(delta, n)
    full = complete_plan(n, T, c, d, sigma)
    if k == "all" or (isinstance(k, int) and k >= n - 1):
        return full
    if isinstance(k, int):
        t, _ = best_threshold(n, k, c, d)
        return GraphPlan(n, k, t, c, d, check_sparse(n, k, t, c, d, sigma), sigma)
    target = 2.0**-sigma
    for kk in range(2, n - 1, 2):
        t, bound = best_threshold(n, kk, c, d)
        if bound <= target * 0.5:  # margin for floating point; the exact check below decides
            try:
                return GraphPlan(n, kk, t, c, d, check_sparse(n, kk, t, c, d, sigma), sigma)
            except ValueError:
                continue
    return full


def share_threshold_for(n: int, k: int, T: int, gamma: float, delta: float, sigma: int = DEFAULT_SIGMA) -> int:
    """The t both sides derive for a given degree (the server announces k; each client recomputes t
    from its own gamma and delta and refuses a k that misses the bound)."""
    return plan(n, T, gamma, delta, k if k < n - 1 else "all", sigma).t
