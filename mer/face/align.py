"""Eye-based face alignment: rotate so the eyes are level, scale and crop to the template.

The output is a square crop of side ``size`` whose eye centres land on the template positions
:data:`mer.face.regions.LEFT_EYE` and :data:`~mer.face.regions.RIGHT_EYE` (fractions of the
side). "Left" is the eye on the image's left. The transform is a similarity (rotation, uniform
scale, translation) computed once per clip, from its onset frame, and applied to every frame
of the clip, so alignment itself adds no motion between onset and apex.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from mer.face.regions import LEFT_EYE, RIGHT_EYE


@dataclass(frozen=True)
class AlignParams:
    """What alignment depends on; part of the flow cache key."""

    size: int = 128  # side of the aligned square crop, pixels
    left_eye: tuple[float, float] = LEFT_EYE  # template eye centres, fractions of the side
    right_eye: tuple[float, float] = RIGHT_EYE

    def key(self) -> str:
        return f"align:v1:{self.size}:{self.left_eye}:{self.right_eye}"


def alignment_matrix(
    left_eye: tuple[float, float], right_eye: tuple[float, float], params: AlignParams = AlignParams()
) -> np.ndarray:
    """2x3 similarity matrix mapping the detected eye centres (pixels) to the template's.

    Raises ValueError when the eyes coincide (no scale or angle can be read from them).
    """
    src_l = complex(*left_eye)
    src_r = complex(*right_eye)
    dst_l = complex(params.left_eye[0] * params.size, params.left_eye[1] * params.size)
    dst_r = complex(params.right_eye[0] * params.size, params.right_eye[1] * params.size)
    if abs(src_r - src_l) < 1e-6:
        raise ValueError(f"eye centres coincide at {left_eye}: cannot align")
    s = (dst_r - dst_l) / (src_r - src_l)  # rotation and scale as one complex number
    t = dst_l - s * src_l
    return np.array([[s.real, -s.imag, t.real], [s.imag, s.real, t.imag]], dtype=np.float64)


def apply_alignment(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Warp ``image`` with ``matrix`` into a ``size`` x ``size`` crop (bilinear, edges replicated)."""
    return cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def align_face(
    image: np.ndarray,
    left_eye: tuple[float, float],
    right_eye: tuple[float, float],
    params: AlignParams = AlignParams(),
) -> np.ndarray:
    """Aligned square crop of ``image`` given its eye centres (pixels, image-left eye first)."""
    return apply_alignment(image, alignment_matrix(left_eye, right_eye, params), params.size)


def eye_roll_degrees(left_eye: tuple[float, float], right_eye: tuple[float, float]) -> float:
    """In-plane rotation of the eye line in degrees (0 when the eyes are level)."""
    return float(np.degrees(np.arctan2(right_eye[1] - left_eye[1], right_eye[0] - left_eye[0])))
