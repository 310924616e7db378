"""AU-driven face motion for the synthetic data set: where each AU pulls the skin, and how.

Each AU moves a few control points of the aligned face (template coordinates, the same
anatomy as :mod:`mer.face.regions`) along a unit direction; ``side`` L/R marks points on the
image-left/right half (a laterality prefix ``L10``/``R12`` moves only that side; C is the
midline, moved by either). Directions follow FACS descriptions (Ekman & Friesen 2002). All
other template points and a ring of border and face-outline anchors stay still, so the
thin-plate spline (:mod:`mer.face.tps`) keeps each motion local to its region.
"""

from __future__ import annotations

import cv2
import numpy as np

from mer.face.regions import all_points
from mer.face.tps import tps_fit

# AU -> [(point (x, y), direction (dx, dy), side)]; y grows downwards
AU_MOTION: dict[int, list[tuple[tuple[float, float], tuple[float, float], str]]] = {
    1: [((0.40, 0.27), (0.0, -1.0), "L"), ((0.60, 0.27), (0.0, -1.0), "R")],  # inner brow raiser
    2: [((0.27, 0.25), (0.0, -1.0), "L"), ((0.73, 0.25), (0.0, -1.0), "R")],  # outer brow raiser
    4: [
        ((0.40, 0.27), (0.5, 0.85), "L"),
        ((0.60, 0.27), (-0.5, 0.85), "R"),  # brow lowerer: inner
        ((0.50, 0.30), (0.0, 0.5), "C"),
    ],  # brows down, together
    5: [((0.32, 0.35), (0.0, -1.0), "L"), ((0.68, 0.35), (0.0, -1.0), "R")],  # upper lid raiser
    6: [
        ((0.27, 0.56), (0.1, -1.0), "L"),
        ((0.73, 0.56), (-0.1, -1.0), "R"),  # cheek raiser
        ((0.32, 0.43), (0.0, -0.4), "L"),
        ((0.68, 0.43), (0.0, -0.4), "R"),
    ],
    7: [
        ((0.32, 0.43), (0.0, -1.0), "L"),
        ((0.68, 0.43), (0.0, -1.0), "R"),  # lid tightener
        ((0.32, 0.35), (0.0, 0.4), "L"),
        ((0.68, 0.35), (0.0, 0.4), "R"),
    ],
    9: [
        ((0.41, 0.58), (0.1, -1.0), "L"),
        ((0.59, 0.58), (-0.1, -1.0), "R"),  # nose wrinkler
        ((0.50, 0.45), (0.0, 0.5), "C"),
    ],
    10: [
        ((0.50, 0.69), (0.0, -1.0), "C"),
        ((0.43, 0.68), (0.0, -0.9), "L"),  # upper lip raiser
        ((0.57, 0.68), (0.0, -0.9), "R"),
    ],
    12: [((0.35, 0.76), (-0.7, -0.7), "L"), ((0.65, 0.76), (0.7, -0.7), "R")],  # lip corner puller
    14: [((0.35, 0.76), (0.9, 0.1), "L"), ((0.65, 0.76), (-0.9, 0.1), "R")],  # dimpler
    15: [((0.35, 0.76), (-0.2, 1.0), "L"), ((0.65, 0.76), (0.2, 1.0), "R")],  # lip corner depressor
    17: [((0.50, 0.93), (0.0, -1.0), "C"), ((0.50, 0.82), (0.0, -0.7), "C")],  # chin raiser
}

#: still points besides the template points: face outline, forehead, nose tip
_EXTRA_ANCHORS = (
    (0.50, 0.12),
    (0.30, 0.13),
    (0.70, 0.13),
    (0.12, 0.35),
    (0.88, 0.35),
    (0.50, 0.60),
    (0.15, 0.75),
    (0.85, 0.75),
    (0.50, 0.52),
)


def parse_combo(text: str) -> list[tuple[int, str]]:
    """ "1+2+R12" -> [(1, "B"), (2, "B"), (12, "R")] (B = both sides)."""
    out = []
    for tok in text.split("+"):
        tok = tok.strip().upper()
        side = tok[0] if tok[0] in "LR" else "B"
        au = int(tok[1:] if side != "B" else tok)
        if au not in AU_MOTION:
            raise ValueError(f"AU{au} has no motion model; modelled AUs: {sorted(AU_MOTION)}")
        out.append((au, side))
    return out


def au_displacements(combo: list[tuple[int, str]], gains: dict[int, float]) -> dict[tuple[float, float], np.ndarray]:
    """Point -> displacement (template units of 'amplitude') for the AUs in ``combo``."""
    disp: dict[tuple[float, float], np.ndarray] = {}
    for au, side in combo:
        for point, direction, pside in AU_MOTION[au]:
            if side != "B" and pside not in (side, "C"):
                continue
            d = np.asarray(direction, dtype=np.float64)
            disp[point] = disp.get(point, np.zeros(2)) + gains.get(au, 1.0) * d / np.linalg.norm(d)
    return disp


def control_points(moving: dict[tuple[float, float], np.ndarray], size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres (K, 2) and unit displacements (K, 2): the moving points, then still anchors."""
    pts, ds = [], []
    for p, d in moving.items():
        pts.append(p)
        ds.append(d)
    still = {tuple(p) for p in all_points().round(4).tolist()} | set(_EXTRA_ANCHORS)
    for p in sorted(still):
        if all(np.hypot(p[0] - q[0], p[1] - q[1]) > 0.02 for q in moving):
            pts.append(p)
            ds.append(np.zeros(2))
    edge = np.linspace(0.0, 1.0, 5)
    for t in edge:
        for p in ((t, 0.0), (t, 1.0), (0.0, t), (1.0, t)):
            if p not in pts:
                pts.append(p)
                ds.append(np.zeros(2))
    return np.asarray(pts, dtype=np.float64) * (size - 1), np.asarray(ds, dtype=np.float64)


def skin_field(centres: np.ndarray, disp: np.ndarray, size: int) -> np.ndarray:
    """Backward skin field (size, size, 2): pixel q of the moved face shows the neutral face at q + F(q).

    F is the TPS through the displaced centres (centres + disp) with values -disp, so it is exact
    at the control points. For a frame at motion fraction s the field s * F is used (exact at
    s = 0 and s = 1, first-order in between).
    """
    if not np.any(disp):
        return np.zeros((size, size, 2), dtype=np.float64)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    grid = np.column_stack([xs.ravel(), ys.ravel()])
    return tps_fit(centres + disp, -disp)(grid).reshape(size, size, 2)


def backward_map(field: np.ndarray, s: float, head: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """cv2.remap maps for a frame: undo the head similarity ``head`` (2x3), then the skin motion.

    Output pixel q samples the neutral face at p + s * F(p) with p = head^-1(q); F is evaluated
    at q instead of p (head motion is sub-pixel and F is smooth).
    """
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    inv = cv2.invertAffineTransform(head)
    px = inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]
    py = inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]
    return ((px + s * field[..., 0]).astype(np.float32), (py + s * field[..., 1]).astype(np.float32))


def head_similarity(dx: float, dy: float, angle_deg: float, scale: float, size: int) -> np.ndarray:
    """2x3 similarity about the image centre: rotate, scale, then shift by (dx, dy) pixels."""
    c = (size - 1) / 2.0
    th = np.radians(angle_deg)
    r = scale * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    t = np.array([c, c]) - r @ np.array([c, c]) + np.array([dx, dy])
    return np.column_stack([r, t])
