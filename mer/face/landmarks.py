"""Landmark backends, chosen by name from a registry.

Every backend turns a grayscale uint8 image into :class:`FaceLandmarks`: the two eye centres
(pixels, image-left eye first), which is what eye-based alignment (:mod:`mer.face.align`) needs,
plus the face box and any detailed points the backend has.

Backends:

- ``template``: no model. The image is taken to be an aligned face crop, as CASME II, SAMM and
  CAS(ME)^3 distribute them; the eyes are the template positions (regions.LEFT_EYE/RIGHT_EYE)
  in the central square of the image. Alignment then reduces to a centre crop and a resize.
- ``haar``: OpenCV's Haar cascades (frontal face + eyes, shipped inside the opencv wheel, so
  offline and in the core install). See :mod:`mer.face.haar`.
- ``dlib``: dlib's HOG face detector + the 68-point shape model from ``face_recognition_models``
  (``pip install 'fedpsyau[landmarks]'``; the 68-point model is licensed for non-commercial use
  only). See :mod:`mer.face.dlib68`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mer.face.regions import LEFT_EYE, RIGHT_EYE


class FaceNotFoundError(ValueError):
    """A backend found no face (or no usable eyes) in an image."""


@dataclass(frozen=True)
class FaceLandmarks:
    left_eye: tuple[float, float]  # image-left eye centre (x, y), pixels
    right_eye: tuple[float, float]  # image-right eye centre (x, y), pixels
    face_box: tuple[int, int, int, int] | None  # (x, y, w, h) or None
    backend: str
    eyes_from: str = "detector"  # "detector", "face-box" (estimated from the box) or "template"
    points: np.ndarray | None = None  # (K, 2) detailed landmarks where the backend has them


class LandmarkBackend(Protocol):
    name: str

    def detect(self, gray: np.ndarray) -> FaceLandmarks:
        """Landmarks of the (largest) face in a 2-D uint8 image; FaceNotFoundError if none."""
        ...


def check_gray(gray: np.ndarray) -> None:
    if not isinstance(gray, np.ndarray) or gray.ndim != 2 or gray.dtype != np.uint8:
        shape = getattr(gray, "shape", None)
        dtype = getattr(gray, "dtype", type(gray).__name__)
        raise ValueError(f"expected a 2-D uint8 grayscale image (got shape {shape}, dtype {dtype})")


class TemplateBackend:
    """Aligned crops: eyes at the template positions of the image's central square."""

    name = "template"

    def detect(self, gray: np.ndarray) -> FaceLandmarks:
        check_gray(gray)
        h, w = gray.shape
        s = min(h, w)
        x0, y0 = (w - s) / 2.0, (h - s) / 2.0
        left = (x0 + LEFT_EYE[0] * s, y0 + LEFT_EYE[1] * s)
        right = (x0 + RIGHT_EYE[0] * s, y0 + RIGHT_EYE[1] * s)
        return FaceLandmarks(left, right, (int(x0), int(y0), s, s), self.name, eyes_from="template")


def _haar() -> LandmarkBackend:
    from mer.face.haar import HaarBackend

    return HaarBackend()


def _dlib() -> LandmarkBackend:
    from mer.face.dlib68 import DlibBackend

    return DlibBackend()


#: name -> factory. Factories import their dependencies lazily.
BACKENDS: dict[str, Callable[[], LandmarkBackend]] = {
    "template": TemplateBackend,
    "haar": _haar,
    "dlib": _dlib,
}

_instances: dict[str, LandmarkBackend] = {}


def get_backend(name: str) -> LandmarkBackend:
    """The backend called ``name`` (instances are cached; cascades load once).

    ValueError lists the valid names; ImportError (from the dlib backend) says what to install.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown landmark backend {name!r}; valid: {', '.join(sorted(BACKENDS))}")
    if name not in _instances:
        _instances[name] = BACKENDS[name]()
    return _instances[name]


def available_backends() -> list[str]:
    """Names of the backends whose dependencies import here."""
    out = []
    for name in sorted(BACKENDS):
        try:
            get_backend(name)
        except ImportError:
            continue
        out.append(name)
    return out
