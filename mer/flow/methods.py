"""Dense optical flow between two grayscale frames, by name.

- ``farneback`` (default): polynomial-expansion flow (Farneback 2003), ``cv2.calcOpticalFlowFarneback``.
- ``dis``: Dense Inverse Search (Kroeger et al. 2016), ``cv2.DISOpticalFlow``, medium preset.
- ``tvl1``: Dual TV-L1 (Zach et al. 2007), ``cv2.optflow.DualTVL1OpticalFlow`` from the contrib
  modules; the most accurate of the three on sub-pixel motion and the slowest. The FED-PsyAU
  paper uses TV-L1.

Each function maps (prev, next) uint8 (H, W) arrays to a float32 (H, W, 2) flow (u, v) in
pixels such that ``next(x + u, y + v) ~ prev(x, y)``. Look-ups go through :data:`FLOW_METHODS`
at call time, so a test can wrap an entry and count calls.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

FlowFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _check(prev: np.ndarray, nxt: np.ndarray) -> None:
    for name, img in (("prev", prev), ("next", nxt)):
        if not isinstance(img, np.ndarray) or img.ndim != 2 or img.dtype != np.uint8:
            raise ValueError(
                f"{name} frame must be a 2-D uint8 array (got {getattr(img, 'shape', None)}, "
                f"{getattr(img, 'dtype', type(img).__name__)})"
            )
    if prev.shape != nxt.shape:
        raise ValueError(f"frames differ in shape: {prev.shape} vs {nxt.shape}")


def farneback(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    _check(prev, nxt)
    flow = cv2.calcOpticalFlowFarneback(
        prev, nxt, None, pyr_scale=0.5, levels=3, winsize=11, iterations=5, poly_n=5, poly_sigma=1.1, flags=0
    )
    return flow.astype(np.float32, copy=False)


_dis: dict[str, cv2.DISOpticalFlow] = {}


def dis(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    _check(prev, nxt)
    if "medium" not in _dis:
        _dis["medium"] = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    return _dis["medium"].calc(prev, nxt, None).astype(np.float32, copy=False)


def tvl1(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    _check(prev, nxt)
    if not hasattr(cv2, "optflow"):
        raise ImportError("TV-L1 flow needs the OpenCV contrib modules (opencv-contrib-python-headless)")
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    return algo.calc(prev, nxt, None).astype(np.float32, copy=False)


FLOW_METHODS: dict[str, FlowFn] = {"farneback": farneback, "dis": dis, "tvl1": tvl1}


def check_method(name: str) -> None:
    """ValueError naming the valid methods when ``name`` is not one."""
    if name not in FLOW_METHODS:
        raise ValueError(f"unknown flow method {name!r}; valid: {', '.join(FLOW_METHODS)}")


def compute_flow(prev: np.ndarray, nxt: np.ndarray, method: str = "farneback") -> np.ndarray:
    """Flow (H, W, 2) float32 from ``prev`` to ``nxt`` with the named method."""
    check_method(method)
    return FLOW_METHODS[method](prev, nxt)
