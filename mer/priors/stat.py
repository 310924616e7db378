"""The statistical AU prior: row-normalised AU co-occurrence counts, as pure functions.

FED-PsyAU (arXiv 2507.20557) mixes a statistical prior attention into each graph: how often AU
``j`` occurs together with AU ``i`` in the training labels. Everything here is a pure function of
a (12, 12) count matrix ``C`` with ``C[i, j]`` = number of samples in which AU i and AU j both
occur and ``C[i, i]`` = number of samples in which AU i occurs. In a federation the counts belong
to the clients, so they are kept as plain integers with a flat vector form
(:func:`counts_to_vector`) that clients can add up with secure aggregation; the server then
calls :func:`statistical_prior` on the sum and never sees a client's counts.

Smoothing: ``P[i, j] = (C[i, j] + s) / sum_k (C[i, k] + s)`` (add-``s`` / Laplace). An AU that was
never seen has an all-zero row and gets the uniform row; ``s = 0`` is allowed and then such a row
is uniform too. Any per-row scaling of ``C`` cancels once a prior is restricted to a graph's
edges (:func:`restrict_prior`), so ``C[i, j] / C[i, i]`` (conditional probability) and row-sum
normalisation give the same graph prior.
"""

from __future__ import annotations

import numpy as np

from mer.face.regions import AU_NODES

N_AUS = len(AU_NODES)
#: Length of the flat count vector: the upper triangle of the symmetric matrix, diagonal included.
VECTOR_LENGTH = N_AUS * (N_AUS + 1) // 2
_TRIU = np.triu_indices(N_AUS)


def cooccurrence_counts(au_multi_hot: np.ndarray) -> np.ndarray:
    """(12, 12) int64 co-occurrence counts of a (N, 12) multi-hot AU label matrix.

    Values above 0.5 count as present. Rows without AU coding (SMIC) must be left out by the
    caller (select with ``au_known``).
    """
    x = np.asarray(au_multi_hot)
    if x.ndim != 2 or x.shape[1] != N_AUS:
        raise ValueError(f"expected AU labels of shape (N, {N_AUS}) (got {x.shape})")
    b = (x > 0.5).astype(np.int64)
    return b.T @ b


def _check_counts(counts: np.ndarray) -> np.ndarray:
    c = np.asarray(counts, dtype=np.float64)
    if c.shape != (N_AUS, N_AUS):
        raise ValueError(f"expected a ({N_AUS}, {N_AUS}) count matrix (got {c.shape})")
    if not np.all(np.isfinite(c)) or (c < 0).any():
        raise ValueError("co-occurrence counts must be finite and non-negative")
    return c


def statistical_prior(counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Row-normalised (12, 12) float64 prior from co-occurrence counts with add-``smoothing``.

    Rows sum to 1; a row of zeros (an AU never seen) becomes uniform.
    """
    if smoothing < 0:
        raise ValueError(f"smoothing must be >= 0 (got {smoothing})")
    c = _check_counts(counts) + smoothing
    rows = c.sum(axis=1, keepdims=True)
    return np.where(rows > 0, c / np.where(rows > 0, rows, 1.0), 1.0 / N_AUS)


def restrict_prior(prior: np.ndarray, adjacency: np.ndarray) -> np.ndarray:
    """Keep a prior on a graph's edges and renormalise each row to 1.

    A row with no mass on its edges becomes uniform over its edges. ``prior`` and ``adjacency``
    have the same (n, n) shape; every row of ``adjacency`` needs at least one edge (self-loop).
    """
    p = np.asarray(prior, dtype=np.float64)
    adj = np.asarray(adjacency, dtype=bool)
    if p.shape != adj.shape or p.ndim != 2:
        raise ValueError(f"prior {p.shape} and adjacency {adj.shape} must be the same square shape")
    if not adj.any(axis=1).all():
        raise ValueError("every node needs at least one edge (add self-loops)")
    masked = np.where(adj, np.clip(p, 0.0, None), 0.0)
    rows = masked.sum(axis=1, keepdims=True)
    uniform = adj / adj.sum(axis=1, keepdims=True)
    return np.where(rows > 0, masked / np.where(rows > 0, rows, 1.0), uniform)


def counts_to_vector(counts: np.ndarray) -> np.ndarray:
    """Flat int64 vector (78,) of a symmetric count matrix: upper triangle, row-major, diagonal included.

    Adding the vectors of several clients gives the vector of their summed counts, so the sum can
    run through secure aggregation.
    """
    c = np.asarray(counts)
    if c.shape != (N_AUS, N_AUS):
        raise ValueError(f"expected a ({N_AUS}, {N_AUS}) count matrix (got {c.shape})")
    if not np.array_equal(c, c.T):
        raise ValueError("co-occurrence counts must be symmetric")
    return c[_TRIU].astype(np.int64)


def vector_to_counts(vector: np.ndarray) -> np.ndarray:
    """Inverse of :func:`counts_to_vector`: a (78,) vector back to the symmetric (12, 12) int64 matrix."""
    v = np.asarray(vector)
    if v.shape != (VECTOR_LENGTH,):
        raise ValueError(f"expected a count vector of shape ({VECTOR_LENGTH},) (got {v.shape})")
    c = np.zeros((N_AUS, N_AUS), dtype=np.int64)
    c[_TRIU] = v
    return c + np.triu(c, 1).T
