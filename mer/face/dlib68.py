"""dlib landmarks: HOG face detector + the 68-point shape predictor (iBUG 300-W layout).

Optional: ``pip install 'fedpsyau[landmarks]'`` (``dlib-bin``, a prebuilt dlib wheel, and
``face_recognition_models``, which ships ``shape_predictor_68_face_landmarks.dat``). Both install
from PyPI for CPython 3.11 on manylinux x86_64. The 68-point model was trained on iBUG 300-W,
whose licence excludes commercial use. ``face_recognition_models`` imports ``pkg_resources``,
so it also needs ``setuptools<81`` (newer setuptools drop that module). Eye centres are the
means of points 36-41 and 42-47. When no face is detected in a small image (a crop of at most
256 px side) the whole image is used as the face box; in a larger image that is an error.
"""

from __future__ import annotations

import numpy as np

from mer.face.landmarks import FaceLandmarks, FaceNotFoundError, check_gray

#: images up to this side with no detected face are taken as face crops (box = whole image)
CROP_MAX_SIDE = 256
INSTALL_HINT = (
    "the 'dlib' landmark backend needs: pip install 'fedpsyau[landmarks]' (dlib-bin, face_recognition_models)"
)


class DlibBackend:
    name = "dlib"

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models
        except ImportError as exc:
            raise ImportError(f"{INSTALL_HINT}; import failed: {exc}") from None
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_model_location())
        self._rect = dlib.rectangle

    def detect(self, gray: np.ndarray) -> FaceLandmarks:
        check_gray(gray)
        h, w = gray.shape
        rects = self._detector(gray, 1)  # upsample once: ME crops are small
        if len(rects) == 0:
            if max(h, w) > CROP_MAX_SIDE:
                raise FaceNotFoundError(f"dlib found no face in a {w}x{h} image")
            rect = self._rect(0, 0, w - 1, h - 1)  # a small crop: take the whole image as the face box
        else:
            rect = max(rects, key=lambda r: r.width() * r.height())
        shape = self._predictor(gray, rect)
        pts = np.array([(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)], dtype=np.float64)
        if len(pts) != 68:
            raise FaceNotFoundError(f"dlib returned {len(pts)} landmarks, expected 68")
        left = tuple(pts[36:42].mean(axis=0))
        right = tuple(pts[42:48].mean(axis=0))
        box = (rect.left(), rect.top(), rect.width(), rect.height())
        return FaceLandmarks(left, right, box, self.name, eyes_from="detector", points=pts)
