"""Landmark backends: registry, template, Haar cascades on real faces, dlib when installed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from mer.data.synth_faces import face_sources
from mer.face.landmarks import BACKENDS, FaceNotFoundError, available_backends, get_backend
from mer.face.regions import LEFT_EYE, RIGHT_EYE


def _real(name: str):
    src = next(s for s in face_sources() if s.name == name)
    return cv2.cvtColor(src.image, cv2.COLOR_BGR2GRAY), np.array(src.left_eye), np.array(src.right_eye)


def test_unknown_backend_lists_valid_names():
    with pytest.raises(ValueError, match="unknown landmark backend 'mediapipe'; valid: dlib, haar, template"):
        get_backend("mediapipe")
    assert {"template", "haar"} <= set(available_backends()) <= set(BACKENDS)


def test_template_backend_puts_eyes_in_central_square():
    lm = get_backend("template").detect(np.zeros((100, 140), np.uint8))
    assert lm.left_eye == pytest.approx((20 + LEFT_EYE[0] * 100, LEFT_EYE[1] * 100))
    assert lm.right_eye == pytest.approx((20 + RIGHT_EYE[0] * 100, RIGHT_EYE[1] * 100))


def test_backends_refuse_colour_or_float_input():
    with pytest.raises(ValueError, match="expected a 2-D uint8 grayscale image"):
        get_backend("template").detect(np.zeros((10, 10, 3), np.uint8))


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
@pytest.mark.parametrize("angle", [-8.0, 0.0, 8.0])
def test_haar_finds_eyes_of_real_faces_within_a_fifth_of_their_distance(name, angle):
    img, le, re = _real(name)
    h, w = img.shape
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 0.9)
    rot = cv2.warpAffine(img, m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    tl, tr = m @ np.append(le, 1), m @ np.append(re, 1)
    lm = get_backend("haar").detect(rot)
    iod = np.linalg.norm(tr - tl)
    assert np.linalg.norm(np.array(lm.left_eye) - tl) < 0.2 * iod
    assert np.linalg.norm(np.array(lm.right_eye) - tr) < 0.2 * iod


def test_haar_reports_no_face_in_noise():
    noise = np.random.default_rng(0).integers(0, 255, (120, 120), dtype=np.uint8)
    with pytest.raises(FaceNotFoundError, match="no frontal face"):
        get_backend("haar").detect(noise)


def test_dlib_backend_when_installed_or_says_what_to_install():
    try:
        backend = get_backend("dlib")
    except ImportError as exc:
        assert "pip install 'fedpsyau[landmarks]'" in str(exc)
        pytest.skip("dlib extra not installed")
    img, le, re = _real("astronaut")
    lm = backend.detect(img)
    assert lm.points.shape == (68, 2)
    assert np.linalg.norm(np.array(lm.left_eye) - le) < 0.2 * np.linalg.norm(re - le)
