"""Patch geometry: the regional stage's boxes sit on the eyes, brows and mouth of each crop geometry."""

import numpy as np
import pytest

from mer.face.align import AlignParams
from mer.face.regions import FACE_CROPS, REGIONS, all_points, face_crop, patch_boxes, patch_side


def _boxes_of(region: str, size: int, crop: str) -> np.ndarray:
    starts = np.cumsum([0] + [len(r.points) for r in REGIONS])
    i = [r.name for r in REGIONS].index(region)
    return patch_boxes(size, crop=crop)[starts[i] : starts[i + 1]]


def _covers(boxes: np.ndarray, p: int, x: float, y: float) -> bool:
    return any(y0 <= y < y0 + p and x0 <= x < x0 + p for y0, x0 in boxes)


@pytest.mark.parametrize("crop", sorted(FACE_CROPS))
@pytest.mark.parametrize("size", [28, 56, 128])
def test_patch_boxes_cover_the_eyes_and_mouth_corners_of_the_crop(crop, size):
    g, p = face_crop(crop), patch_side(size)
    eyes = _boxes_of("eyes_cheeks", size, crop)
    mouth = _boxes_of("mouth_chin", size, crop)
    for side in (-1, 1):
        ex = (0.5 + side * g.eye_dx) * size
        assert _covers(eyes, p, ex, g.eye_y * size), f"{crop} eye at x={ex:.1f}, y={g.eye_y * size:.1f}"
        mx = (0.5 + side * g.eye_dx * (0.15 / 0.18)) * size  # lip corners: 0.35 / 0.65 in the template
        assert _covers(mouth, p, mx, g.mouth_y * size), f"{crop} mouth corner at x={mx:.1f}"


def test_brow_boxes_sit_above_the_eye_boxes_and_inside_the_image():
    for crop in FACE_CROPS:
        for size in (28, 56):
            brows, eyes = _boxes_of("brows", size, crop), _boxes_of("eyes_cheeks", size, crop)
            assert brows[:, 0].max() < eyes[:2, 0].min() + patch_side(size) / 2
            b = patch_boxes(size, crop=crop)
            assert b.min() >= 0 and b.max() <= size - patch_side(size)


def test_aligned_geometry_is_the_one_align_face_and_the_synthetic_sets_use():
    a = AlignParams()
    g = face_crop("aligned")
    assert (a.left_eye[1], a.right_eye[1]) == (g.eye_y, g.eye_y)
    assert (a.right_eye[0] - a.left_eye[0]) / 2 == pytest.approx(g.eye_dx)
    assert np.array_equal(all_points("aligned"), g.map(all_points("aligned")))  # identity on its own points


def test_tight_geometry_matches_the_composite_crop():
    g = face_crop("tight")
    assert 0.30 <= g.eye_y <= 0.35 and 0.75 <= g.mouth_y <= 0.80
    upper_lids = all_points("tight")[len(REGIONS[0].points) :][:2]  # eyes_cheeks starts with the upper lids
    assert (upper_lids[:, 1] < g.eye_y).all()
    with pytest.raises(ValueError, match="unknown face crop 'loose'; valid: aligned, tight"):
        patch_boxes(28, crop="loose")
