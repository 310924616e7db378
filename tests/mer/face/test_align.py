"""Eye-based alignment: eyes land on the template, rotation levels them."""

from __future__ import annotations

import numpy as np
import pytest

from mer.face.align import AlignParams, align_face, alignment_matrix, eye_roll_degrees
from mer.face.regions import LEFT_EYE, RIGHT_EYE


def test_matrix_maps_eyes_onto_template_positions():
    p = AlignParams(size=100)
    le, re = (210.0, 130.0), (290.0, 150.0)
    m = alignment_matrix(le, re, p)
    got = [m @ np.array([x, y, 1.0]) for x, y in (le, re)]
    np.testing.assert_allclose(got[0], np.array(LEFT_EYE) * 100, atol=1e-9)
    np.testing.assert_allclose(got[1], np.array(RIGHT_EYE) * 100, atol=1e-9)


def test_aligned_crop_levels_a_rotated_eye_pair():
    img = np.zeros((200, 200), np.uint8)
    le, re = (60.0, 100.0), (140.0, 120.0)  # tilted 14 degrees
    for x, y in (le, re):
        img[int(y) - 2 : int(y) + 3, int(x) - 2 : int(x) + 3] = 255
    out = align_face(img, le, re, AlignParams(size=64))
    ys, xs = np.nonzero(out > 100)
    left = xs < 32
    assert abs(ys[left].mean() - ys[~left].mean()) < 1.0  # level after alignment
    assert abs(ys.mean() - LEFT_EYE[1] * 64) < 1.5
    assert eye_roll_degrees(le, re) == pytest.approx(np.degrees(np.arctan2(20, 80)))


def test_coincident_eyes_are_refused():
    with pytest.raises(ValueError, match="coincide"):
        alignment_matrix((5.0, 5.0), (5.0, 5.0))
