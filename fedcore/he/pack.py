"""Pure packing maths for CKKS aggregation: frames, complex slot chunks, the rounding grid.

No crypto and no state; every function is testable alone.

- **Frame.** A client encrypts ``[w*x_1 .. w*x_L, w, 1, peak * 2^-shift]``: the weighted update,
  its weight, a count (so the coordinator never sees one weight and the clients can check how many
  inputs the sum holds) and a bound slot, ``peak = max(|w*x|, w, 1)`` scaled down by a public
  power of two; summed, the bound slot bounds every slot of the sum (|sum_i a_i| <= sum_i
  peak_i), which tells a client whether the sum fits a lower level. Decrypted sums leave a client
  as ``[sum w*x, sum w, count]`` (L + 2 values): the bound slot stays with the clients.
- **Chunks.** A ciphertext of ring degree N has N/2 complex slots; real values ``v[0:R/2]`` go to
  the real parts and ``v[R/2:R]`` to the imaginary parts (R = N reals per ciphertext). The vector
  is zero-padded to a multiple of R, so every chunk is full and chunk ``c`` covers ``v[cR:(c+1)R]``.
- **Grid.** Decrypted sums leave a client only as integers ``round(v * 2^round_bits)``.
"""

from __future__ import annotations

import numpy as np


def frame(vector: np.ndarray, weight: float, bound_shift_bits: int = 0) -> np.ndarray:
    """``[w * x, w, 1, peak * 2^-bound_shift_bits]`` as float64 (length L + 3)."""
    x = np.asarray(vector, dtype=np.float64).ravel()
    out = np.empty(x.size + 3, np.float64)
    np.multiply(x, weight, out=out[:-3])
    out[-3] = weight
    out[-2] = 1.0
    peak = max(float(np.abs(out[:-2]).max(initial=0.0)), 1.0)
    out[-1] = peak * 2.0**-bound_shift_bits
    return out


def split_bound(values: np.ndarray, bound_shift_bits: int = 0) -> tuple[np.ndarray, float]:
    """A (summed) frame as ``([sum w*x, sum w, count], sum of peaks)``."""
    return values[:-1], float(values[-1]) * 2.0**bound_shift_bits


def unframe(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``[sum w*x, sum w, count]`` (a summed frame without its bound slot) as its three parts."""
    return values[:-2], float(values[-2]), float(values[-1])


def num_chunks(length: int, reals_per_chunk: int) -> int:
    return max(1, -(-length // reals_per_chunk))


def to_complex_chunks(values: np.ndarray, reals_per_chunk: int) -> list[np.ndarray]:
    """Split a real vector into complex128 chunks of ``reals_per_chunk // 2`` slots."""
    if reals_per_chunk <= 0 or reals_per_chunk % 2:
        raise ValueError(f"reals_per_chunk must be a positive even number (got {reals_per_chunk})")
    v = np.asarray(values, dtype=np.float64).ravel()
    n = num_chunks(v.size, reals_per_chunk)
    padded = np.zeros(n * reals_per_chunk, np.float64)
    padded[: v.size] = v
    blocks = padded.reshape(n, 2, reals_per_chunk // 2)  # (chunk, re/im, slot)
    z = blocks[:, 0, :] + 1j * blocks[:, 1, :]  # (chunk, slot)
    return list(z)


def from_complex_chunks(chunks: list[np.ndarray], length: int, reals_per_chunk: int) -> np.ndarray:
    """Inverse of :func:`to_complex_chunks`; keeps the first ``length`` reals."""
    half = reals_per_chunk // 2
    if length > len(chunks) * reals_per_chunk:
        raise ValueError(f"{len(chunks)} chunks of {reals_per_chunk} reals cannot hold {length} values")
    out = np.empty((len(chunks), 2, half), np.float64)  # (chunk, re/im, slot)
    for i, z in enumerate(chunks):
        if z.shape[0] < half:
            raise ValueError(f"chunk {i} has {z.shape[0]} slots (expected at least {half})")
        out[i, 0] = z[:half].real
        out[i, 1] = z[:half].imag
    return out.reshape(-1)[:length]


def to_grid(values: np.ndarray, bits: int) -> np.ndarray:
    """``round(values * 2^bits)`` as int64 (round half to even). Caller bounds |values|."""
    scaled = np.rint(np.asarray(values, np.float64) * (2.0**bits))
    if not np.isfinite(scaled).all() or np.abs(scaled).max(initial=0) >= 2.0**62:
        raise ValueError(f"values do not fit the 2^-{bits} grid in int64")
    return scaled.astype(np.int64)


def from_grid(units: np.ndarray, bits: int) -> np.ndarray:
    return np.asarray(units, np.int64).astype(np.float64) * (2.0**-bits)
