"""Flow images: shape, dtype, ranges, sign kept, sizes 28 and 128; patches from regions."""

from __future__ import annotations

import numpy as np
import pytest

from mer.face.regions import all_points, patch_boxes, patch_side
from mer.flow.image import FLOW_FLOOR, flow_image, resize_flow_image
from mer.flow.patches import extract_patches


@pytest.mark.parametrize("size", [28, 128])
def test_flow_image_shape_range_and_sign(size):
    flow = np.zeros((128, 128, 2), np.float32)
    flow[:, :64, 0] = -2.0  # left half moves left
    flow[:, 64:, 0] = 1.0  # right half moves right, half as far
    img = flow_image(flow, size)
    assert img.shape == (3, size, size) and img.dtype == np.float32
    assert img[0, :, : size // 4].mean() == pytest.approx(-1.0, abs=0.02)
    assert img[0, :, -size // 4 :].mean() == pytest.approx(0.5, abs=0.02)  # relative size kept
    assert np.abs(img[1]).max() < 1e-6
    assert img[2].max() == pytest.approx(1.0) and img[2].min() >= 0.0  # strain only at the seam
    assert img[2, :, : size // 4].max() < 1e-6


def test_still_clip_is_not_blown_up_to_full_range():
    flow = np.random.default_rng(0).normal(0, 0.001, (64, 64, 2)).astype(np.float32)
    img = flow_image(flow, 64)
    assert np.abs(img[:2]).max() <= 0.01 / FLOW_FLOOR


def test_resize_flow_image_keeps_ranges():
    img = np.random.default_rng(0).uniform(-1, 1, (3, 28, 28)).astype(np.float32)
    img[2] = np.abs(img[2])
    out = resize_flow_image(img, 128)
    assert out.shape == (3, 128, 128) and out[:2].min() >= -1 and out[2].min() >= 0 and out[2].max() <= 1


def test_patches_match_region_boxes():
    img = np.random.default_rng(1).normal(size=(3, 128, 128)).astype(np.float32)
    pt = extract_patches(img)
    p, boxes = patch_side(128), patch_boxes(128)
    assert pt.shape == (len(all_points()), 3, p, p)
    y0, x0 = boxes[5]
    np.testing.assert_array_equal(pt[5], img[:, y0 : y0 + p, x0 : x0 + p])
    batch = extract_patches(np.stack([img, img * 2]), patch=7)
    assert batch.shape == (2, len(all_points()), 3, 7, 7)
    with pytest.raises(ValueError, match=r"expected a flow image \(3, S, S\)"):
        extract_patches(np.zeros((2, 28, 28)))
