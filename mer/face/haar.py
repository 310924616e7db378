"""Haar-cascade landmarks: OpenCV's frontal-face and eye cascades (Viola & Jones 2001).

The cascade XML files ship inside the opencv-contrib wheel (``cv2.data.haarcascades``), so this
backend works offline with the core install. Steps:

1. Pad the image by a quarter of its side (replicated edges): tight crops such as CASME II's
   leave the detector no margin around the face otherwise.
2. Detect faces on the histogram-equalised image; keep the largest.
3. Detect eyes in the upper 60 % of the face box; keep the best-matched pair (one per half of
   the box, sizes alike, nearly level).
4. Without such a pair, estimate the eyes from the face box at the positions where the
   cascade's boxes put them on average (30 % / 70 % across, 38 % down), and say so in
   ``FaceLandmarks.eyes_from = "face-box"``.
"""

from __future__ import annotations

import cv2
import numpy as np

from mer.face.landmarks import FaceLandmarks, FaceNotFoundError, check_gray

#: Eye centres inside a frontal-face cascade box, fractions of the box (measured on portraits).
BOX_LEFT_EYE = (0.30, 0.38)
BOX_RIGHT_EYE = (0.70, 0.38)


def _cascade(filename: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + filename
    clf = cv2.CascadeClassifier(path)
    if clf.empty():
        raise ImportError(f"OpenCV Haar cascade {path} is missing or unreadable; "
                          "install opencv-contrib-python-headless>=4.10,<5 (5.x wheels ship no cascades)")
    return clf


class HaarBackend:
    name = "haar"

    def __init__(self, min_face_fraction: float = 0.3) -> None:
        self.face = _cascade("haarcascade_frontalface_default.xml")
        self.eye = _cascade("haarcascade_eye.xml")
        self.min_face_fraction = min_face_fraction

    def detect(self, gray: np.ndarray) -> FaceLandmarks:
        check_gray(gray)
        h, w = gray.shape
        pad = max(h, w) // 4
        padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        eq = cv2.equalizeHist(padded)
        min_side = max(20, int(self.min_face_fraction * min(h, w)))
        faces = self.face.detectMultiScale(eq, scaleFactor=1.05, minNeighbors=4, minSize=(min_side, min_side))
        if len(faces) == 0:
            raise FaceNotFoundError(f"no frontal face found by the Haar cascade in a {w}x{h} image")
        fx, fy, fw, fh = max(faces, key=lambda b: b[2] * b[3])
        pair = self._eyes(eq, fx, fy, fw, fh)
        box = (int(fx - pad), int(fy - pad), int(fw), int(fh))
        if pair is None:
            left = (fx - pad + BOX_LEFT_EYE[0] * fw, fy - pad + BOX_LEFT_EYE[1] * fh)
            right = (fx - pad + BOX_RIGHT_EYE[0] * fw, fy - pad + BOX_RIGHT_EYE[1] * fh)
            return FaceLandmarks(left, right, box, self.name, eyes_from="face-box")
        (lx, ly), (rx, ry) = pair
        return FaceLandmarks((lx - pad, ly - pad), (rx - pad, ry - pad), box, self.name, eyes_from="detector")

    def _eyes(self, eq: np.ndarray, fx: int, fy: int, fw: int, fh: int):
        roi = eq[fy:fy + int(0.6 * fh), fx:fx + fw]
        min_eye = max(5, fw // 10)
        eyes = self.eye.detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3, minSize=(min_eye, min_eye),
                                         maxSize=(fw // 2, fw // 2))
        centres = [(fx + ex + ew / 2.0, fy + ey + eh / 2.0, ew) for ex, ey, ew, eh in eyes]
        lefts = [c for c in centres if c[0] < fx + fw / 2.0]
        rights = [c for c in centres if c[0] >= fx + fw / 2.0]
        best, best_cost = None, np.inf
        for lx, ly, lw in lefts:
            for rx, ry, rw in rights:
                dist = rx - lx
                if dist < 0.25 * fw or abs(ry - ly) > 0.25 * dist:
                    continue  # too close together or far from level: not a pair of eyes
                cost = abs(ry - ly) / dist + abs(lw - rw) / max(lw, rw) + abs(dist / fw - 0.4)
                if cost < best_cost:
                    best, best_cost = ((lx, ly), (rx, ry)), cost
        return best
