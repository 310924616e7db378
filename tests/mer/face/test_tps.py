"""Thin-plate spline: interpolation, affine reproduction, warping."""

from __future__ import annotations

import numpy as np
import pytest

from mer.face.tps import displacement_field, tps_fit, warp


def test_tps_interpolates_its_control_values():
    rng = np.random.default_rng(0)
    c = rng.uniform(0, 100, (12, 2))
    v = rng.normal(0, 2, (12, 2))
    np.testing.assert_allclose(tps_fit(c, v)(c), v, atol=1e-8)


def test_tps_reproduces_an_affine_map_exactly():
    rng = np.random.default_rng(1)
    c = rng.uniform(0, 50, (8, 2))
    a = np.array([[0.5, -0.2], [0.1, 0.3]])
    f = tps_fit(c, c @ a.T + [1.0, -2.0])
    q = rng.uniform(0, 50, (20, 2))
    np.testing.assert_allclose(f(q), q @ a.T + [1.0, -2.0], atol=1e-8)
    assert np.abs(f.weights).max() < 1e-8  # no bending needed


def test_collinear_control_points_are_refused():
    with pytest.raises(ValueError, match="singular"):
        tps_fit(np.array([[0, 0], [1, 1], [2, 2], [3, 3.0]]), np.zeros((4, 2)))


def test_field_is_local_between_still_anchors():
    pts = np.array([[32, 32], [0, 0], [63, 0], [0, 63], [63, 63], [32, 0], [0, 32], [63, 32], [32, 63.0]])
    disp = np.zeros_like(pts)
    disp[0] = [0, -2]
    field = displacement_field(pts, disp, (64, 64))
    assert field[32, 32, 1] == pytest.approx(-2, abs=1e-6)
    assert abs(field[2, 2]).max() < 0.2 and abs(field[60, 60]).max() < 0.2


def test_warp_moves_content_by_the_displacement():
    img = np.zeros((64, 64), np.float32)
    img[28:36, 28:36] = 255
    corners = [[0, 0], [63, 0], [0, 63], [63, 63]]
    # move the whole image 3 px right: every control point moves
    c = np.array(corners + [[32, 32]], float)
    out = warp(img, c, np.tile([3.0, 0.0], (5, 1)))
    xs = np.nonzero(out[32] > 127)[0]
    assert xs.min() == 31 and xs.max() == 38
