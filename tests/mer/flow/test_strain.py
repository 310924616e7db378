"""Optical strain: zero for rigid translation, the analytic value for a uniform stretch."""

from __future__ import annotations

import numpy as np
import pytest

from mer.flow.strain import optical_strain


def test_translation_has_no_strain():
    flow = np.zeros((20, 30, 2), np.float32)
    flow[..., 0], flow[..., 1] = 1.7, -0.4
    assert np.abs(optical_strain(flow)).max() < 1e-6


def test_uniform_stretch_and_shear_match_analytic_strain():
    ys, xs = np.mgrid[0:40, 0:40].astype(np.float64)
    a, b, c = 0.02, -0.01, 0.03  # u = a x + c y, v = b y
    flow = np.dstack([a * xs + c * ys, b * ys])
    want = np.sqrt(a**2 + b**2 + 2 * (0.5 * c) ** 2)
    np.testing.assert_allclose(optical_strain(flow), want, rtol=1e-5)


def test_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"flow must be \(H>=2, W>=2, 2\)"):
        optical_strain(np.zeros((5, 5, 3)))
