"""Thin-plate spline (TPS) interpolation and image warping, written from the equations.

A TPS maps points of the plane through

    f(p) = a0 + a1 x + a2 y + sum_i w_i U(|p - c_i|),    U(r) = r^2 log r  (U(0) = 0)

with control points c_i. Fitting solves the (K + 3) x (K + 3) linear system

    [ K + lam I   P ] [ w ]   [ v ]
    [ P^T         0 ] [ a ] = [ 0 ],    K_ij = U(|c_i - c_j|),  P_i = (1, x_i, y_i),

one column per output dimension (Bookstein 1989). ``lam`` > 0 relaxes exact interpolation.
These are pure functions: no state, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


def _kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r written in r^2: 0.5 * r2 * log(r2), with U(0) = 0."""
    return 0.5 * r2 * np.log(np.maximum(r2, 1e-300))  # 0 * log(1e-300) = 0 at r = 0


def _sqdist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # |a|^2 + |b|^2 - 2 a.b, clipped at 0 against rounding; (M, K)
    d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)
    return np.maximum(d2, 0.0)


@dataclass(frozen=True)
class TPS:
    """A fitted spline: control points (K, 2), kernel weights (K, D), affine part (3, D)."""

    centres: np.ndarray
    weights: np.ndarray
    affine: np.ndarray

    def __call__(self, points: np.ndarray) -> np.ndarray:
        """Evaluate at points (M, 2) -> (M, D)."""
        points = np.asarray(points, dtype=np.float64)
        k = _kernel(_sqdist(points, self.centres))  # (M, K)
        p = np.column_stack([np.ones(len(points)), points])  # (M, 3)
        return k @ self.weights + p @ self.affine


def tps_fit(centres: np.ndarray, values: np.ndarray, lam: float = 0.0) -> TPS:
    """Fit a TPS through ``values`` (K, D) at ``centres`` (K, 2).

    Raises ValueError for fewer than 3 points, mismatched shapes or a singular system
    (e.g. all centres on one line).
    """
    c = np.asarray(centres, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 1:
        v = v[:, None]
    if c.ndim != 2 or c.shape[1] != 2 or len(c) < 3:
        raise ValueError(f"centres must be (K>=3, 2) (got {c.shape})")
    if len(v) != len(c):
        raise ValueError(f"values has {len(v)} rows, centres has {len(c)}")
    n = len(c)
    if np.linalg.matrix_rank(np.column_stack([np.ones(n), c - c.mean(0)])) < 3:
        raise ValueError("TPS system is singular: all control points lie on one line")
    if len(np.unique(np.round(c, 9), axis=0)) < n:
        raise ValueError("TPS system is singular: control points are duplicated")
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = _kernel(_sqdist(c, c)) + lam * np.eye(n)
    p = np.column_stack([np.ones(n), c])
    a[:n, n:] = p
    a[n:, :n] = p.T
    b = np.zeros((n + 3, v.shape[1]))
    b[:n] = v
    try:
        sol = np.linalg.solve(a, b)
    except np.linalg.LinAlgError:
        raise ValueError("TPS system is singular: control points are duplicated or collinear") from None
    return TPS(c, sol[:n], sol[n:])


def displacement_field(centres: np.ndarray, disp: np.ndarray, shape: tuple[int, int], lam: float = 0.0) -> np.ndarray:
    """Dense forward displacement (H, W, 2) in pixels that moves ``centres`` by ``disp``.

    The field is the TPS through the given displacements, evaluated on the pixel grid.
    """
    h, w = shape
    ys, xs = np.mgrid[0:h, 0:w]
    grid = np.column_stack([xs.ravel(), ys.ravel()]).astype(np.float64)
    tps = tps_fit(centres, disp, lam)
    return tps(grid).reshape(h, w, 2)


def warp(image: np.ndarray, centres: np.ndarray, disp: np.ndarray, lam: float = 0.0) -> np.ndarray:
    """Warp ``image`` so that the content at ``centres`` (K, 2), pixel (x, y), moves by ``disp``.

    The backward map is fitted on the *destination* points (centres + disp) with values
    -disp, so each destination pixel q samples the source at q + f(q); at the control points
    this is exact. Bilinear sampling, border replicated.
    """
    centres = np.asarray(centres, dtype=np.float64)
    disp = np.asarray(disp, dtype=np.float64)
    h, w = image.shape[:2]
    back = displacement_field(centres + disp, -disp, (h, w), lam)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    map_x = xs + back[..., 0].astype(np.float32)
    map_y = ys + back[..., 1].astype(np.float32)
    return cv2.remap(image, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
