"""Distributed DP hook: integer noise a client adds to its quantised input before masking.

With ``noise_sigma`` > 0 (in quantised integer units, per client) each client adds independent
discrete noise to its L weighted values, so the sum of n survivors carries noise of standard
deviation sqrt(n) * sigma (Kairouz et al. 2021, distributed discrete Gaussian). The noise must be
integer-valued (float Gaussian noise is attackable) and from a secure RNG.

Where the sampler comes from, first match wins:

1. ``noise_sampler=`` given to :class:`~fedcore.secagg.client.SecAggClient`;
2. :data:`NOISE_SAMPLER`, a module-level hook (set it once at start-up);
3. :func:`fedcore.dp.discrete.sample_discrete_gaussian` (the exact sampler of the DP package), called
   as ``sample(sigma, size)``, which draws from its secure RNG (keyed from ``os.urandom``) by default.

A sampler is ``sampler(sigma: float, size: int) -> integer ndarray of shape (size,)``. Each sample is
then clipped to +-:data:`~fedcore.secagg.quantize.NOISE_TAIL` * sigma (which the overflow bound
accounts for); the number clipped is logged.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable

import numpy as np

log = logging.getLogger(__name__)

Sampler = Callable[[float, int], np.ndarray]

#: module-level hook (see the module docstring); None = fall back to fedcore.dp.discrete.
NOISE_SAMPLER: Sampler | None = None


def default_sampler() -> Sampler | None:
    """The hook, else the DP package's exact discrete Gaussian sampler (secure RNG), else None."""
    if NOISE_SAMPLER is not None:
        return NOISE_SAMPLER
    try:
        module = importlib.import_module("fedcore.dp.discrete")
    except ImportError:
        return None
    sample = getattr(module, "sample_discrete_gaussian", None)
    if sample is None:
        return None
    return lambda sigma, size: sample(sigma, size)  # rng=None: a fresh SecureRNG


def draw_noise(sampler: Sampler, sigma: float, size: int, bound: int) -> tuple[np.ndarray, int]:
    """``size`` integer noise values clipped to [-bound, bound] (int64), and how many were clipped."""
    raw = np.asarray(sampler(sigma, size))
    if raw.shape != (size,) or raw.dtype.kind not in "iu":
        raise ValueError(f"the noise sampler must return {size} integers (got {raw.dtype} {raw.shape})")
    noise = raw.astype(np.int64)
    clipped = int(np.count_nonzero(np.abs(noise) > bound))
    if clipped:
        log.warning("clipped %d noise values beyond +-%d (sigma %.3g)", clipped, bound, sigma)
        np.clip(noise, -bound, bound, out=noise)
    return noise, clipped
