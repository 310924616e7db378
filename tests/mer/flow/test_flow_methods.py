"""Flow methods recover a known sub-pixel shift, with the documented sign convention."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mer.flow.methods import FLOW_METHODS, compute_flow


def _pair(dx: float, dy: float, size: int = 96):
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.uniform(0, 255, (size, size)).astype(np.float32), (0, 0), 2.5)
    img = ((img - img.min()) / np.ptp(img) * 220 + 15).astype(np.uint8)
    m = np.array([[1, 0, dx], [0, 1, dy]], float)
    return img, cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)


@pytest.mark.parametrize("method, tol", [("farneback", 0.25), ("dis", 0.35), ("tvl1", 0.15)])
def test_method_recovers_known_subpixel_shift(method, tol):
    a, b = _pair(0.8, -0.5)
    f = compute_flow(a, b, method)
    assert f.shape == (96, 96, 2) and f.dtype == np.float32
    inner = f[16:-16, 16:-16]
    assert abs(np.median(inner[..., 0]) - 0.8) < tol and abs(np.median(inner[..., 1]) + 0.5) < tol


def test_unknown_method_and_bad_frames_are_named():
    a, b = _pair(1, 0)
    with pytest.raises(ValueError, match="valid: farneback, dis, tvl1"):
        compute_flow(a, b, "horn-schunck")
    with pytest.raises(ValueError, match="frames differ in shape"):
        compute_flow(a, b[:50], "farneback")
    with pytest.raises(ValueError, match="prev frame must be a 2-D uint8 array"):
        FLOW_METHODS["dis"](a.astype(np.float32), b)
