"""Haar-cascade landmarks: OpenCV's frontal-face and eye cascades (Viola & Jones 2001).

The cascade XML files ship inside the opencv-contrib wheel (``cv2.data.haarcascades``), so this
backend works offline with the core install. Steps:

1. Detect faces; if none, pad the image by a quarter of its side (replicated edges) and retry:
   tight crops such as CASME II's leave the detector no margin around the face otherwise.
2. Detect faces on the histogram-equalised image; keep the most confident box.
3. Detect eyes in a band of the face box; keep the nearly level pair closest to where the box
   puts the eyes (each within 12 % of the box side of that spot).
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
        raise ImportError(
            f"OpenCV Haar cascade {path} is missing or unreadable; "
            "install opencv-contrib-python-headless>=4.10,<5 (5.x wheels ship no cascades)"
        )
    return clf


class HaarBackend:
    name = "haar"

    def __init__(self, min_face_fraction: float = 0.12) -> None:
        self.face = _cascade("haarcascade_frontalface_default.xml")
        self.eye = _cascade("haarcascade_eye.xml")
        self.min_face_fraction = min_face_fraction

    def detect(self, gray: np.ndarray) -> FaceLandmarks:
        check_gray(gray)
        h, w = gray.shape
        for pad in (0, max(h, w) // 4):  # tight crops: retry with a margin
            padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else gray
            eq = cv2.equalizeHist(padded)
            min_side = max(20, int(self.min_face_fraction * min(h, w)))
            faces, _, weights = self.face.detectMultiScale3(
                eq, scaleFactor=1.05, minNeighbors=4, minSize=(min_side, min_side), outputRejectLevels=True
            )
            if len(faces):
                break
        else:
            raise FaceNotFoundError(f"no frontal face found by the Haar cascade in a {w}x{h} image")
        fx, fy, fw, fh = (int(v) for v in faces[int(np.argmax(np.ravel(weights)))])  # most confident box
        box = (fx - pad, fy - pad, fw, fh)
        guess_l = (fx + BOX_LEFT_EYE[0] * fw, fy + BOX_LEFT_EYE[1] * fh)
        guess_r = (fx + BOX_RIGHT_EYE[0] * fw, fy + BOX_RIGHT_EYE[1] * fh)
        pair = self._eyes(eq, (fx, fy, fw, fh), guess_l, guess_r)
        if pair is None:
            return FaceLandmarks(
                (guess_l[0] - pad, guess_l[1] - pad),
                (guess_r[0] - pad, guess_r[1] - pad),
                box,
                self.name,
                eyes_from="face-box",
            )
        (lx, ly), (rx, ry) = pair
        return FaceLandmarks((lx - pad, ly - pad), (rx - pad, ry - pad), box, self.name, eyes_from="detector")

    def _eyes(self, eq: np.ndarray, face: tuple[int, int, int, int], guess_l, guess_r):
        """The detected eye pair closest to the box's expected eye positions, or None.

        Eyes are searched in the band 15-60 % down the face box; a pair must be nearly level and
        each eye within 12 % of the box side from where the box puts it (rejects brows,
        nostrils, glasses rims).
        """
        fx, fy, fw, fh = face
        y0 = fy + int(0.15 * fh)
        roi = eq[y0 : fy + int(0.6 * fh), fx : fx + fw]
        min_eye = max(5, fw // 10)
        eyes = self.eye.detectMultiScale(
            roi, scaleFactor=1.05, minNeighbors=3, minSize=(min_eye, min_eye), maxSize=(fw // 2, fw // 2)
        )
        centres = [(fx + ex + ew / 2.0, y0 + ey + eh / 2.0) for ex, ey, ew, eh in eyes]
        tol = 0.12 * fw

        def near(c, g):
            return float(np.hypot(c[0] - g[0], c[1] - g[1]))

        lefts = [c for c in centres if near(c, guess_l) < tol]
        rights = [c for c in centres if near(c, guess_r) < tol]
        best, best_cost = None, np.inf
        for lc in lefts:
            for rc in rights:
                if abs(rc[1] - lc[1]) > 0.2 * (rc[0] - lc[0]):
                    continue
                cost = near(lc, guess_l) + near(rc, guess_r)
                if cost < best_cost:
                    best, best_cost = (lc, rc), cost
        return best
