"""AU nodes, AU regions and their patch points, defined once, as data.

The points are in normalised coordinates (x, y in [0, 1]) of an *aligned* face crop: the
crop produced by :func:`mer.face.align.align_face` (eyes level, inter-ocular distance fixed),
which is also how CASME II, SAMM and CAS(ME)^3 distribute their cropped faces. The layout
follows the facial anatomy that FACS ties each AU to (Ekman & Friesen, FACS manual 2002) and
the four regions of FED-PsyAU's local region module (arXiv 2507.20557):

- brows (AU1 inner brow raiser, AU2 outer brow raiser, AU4 brow lowerer)
- eyes/cheeks (AU5 upper lid raiser, AU6 cheek raiser, AU7 lid tightener)
- nose/upper lip (AU9 nose wrinkler, AU10 upper lip raiser)
- mouth/chin (AU12 lip corner puller, AU14 dimpler, AU15 lip corner depressor, AU17 chin raiser)

**Crop geometry.** The points of :data:`REGIONS` are written for the ``aligned`` crop
(:data:`FACE_CROPS`): eye centres at (0.32, 0.38) and (0.68, 0.38), lip corners at y = 0.76,
brows at y = 0.25-0.30, nose wings at 0.58, chin at 0.93 (fractions of the side). That is the
crop :func:`mer.face.align.align_face` makes and the one every synthetic set of this package
renders (the default set and the presets draw their faces through it). The MEGC2019 composite's
28x28 images come from tighter face crops (detector boxes from the brows to the chin): eyes at
about y = 0.30-0.35, mouth at about 0.75-0.80, the face filling the width. The ``tight``
geometry maps the template there (eyes at y 0.325 and x 0.29 / 0.71, lip corners at y 0.775) by
a scaling about the image centre line and the eye line; with the aligned points on such a crop
the brow patches would sit about 0.075 of the side (half a patch) too low. Choose the geometry
of the data, not of the model: :func:`patch_boxes` takes it as ``crop``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: The 12 AU nodes in model order; AU label vectors are multi-hot in this order.
AU_NODES: tuple[int, ...] = (1, 2, 4, 5, 6, 7, 9, 10, 12, 14, 15, 17)
#: Node indices of the upper-face and lower-face graphs.
UPPER_NODES: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
LOWER_NODES: tuple[int, ...] = (6, 7, 8, 9, 10, 11)

# Template landmarks of an aligned crop (fraction of width, fraction of height).
LEFT_EYE = (0.32, 0.38)
RIGHT_EYE = (0.68, 0.38)


@dataclass(frozen=True)
class FaceCrop:
    """Where a crop puts the face: eye line, lip-corner line and eye spread (fractions of the side).

    Template points (written for ``aligned``) map as x' = 0.5 + (x - 0.5) * sx,
    y' = eye_y + (y - 0.38) * sy, with sx = eye_dx / 0.18 and sy = (mouth_y - eye_y) / 0.38.
    """

    name: str
    eye_y: float  # eye centres' y
    mouth_y: float  # lip corners' y
    eye_dx: float  # half the inter-ocular distance

    def map(self, points: np.ndarray) -> np.ndarray:
        """(P, 2) template (x, y) -> this crop's (x, y), clipped to [0, 1]."""
        ref = FACE_CROPS_REF
        sx, sy = self.eye_dx / ref.eye_dx, (self.mouth_y - self.eye_y) / (ref.mouth_y - ref.eye_y)
        x = 0.5 + (points[:, 0] - 0.5) * sx
        y = self.eye_y + (points[:, 1] - ref.eye_y) * sy
        return np.clip(np.stack([x, y], axis=1), 0.0, 1.0)


#: the geometry the template points are written in (this package's aligned crop)
FACE_CROPS_REF = FaceCrop("aligned", eye_y=LEFT_EYE[1], mouth_y=0.76, eye_dx=(RIGHT_EYE[0] - LEFT_EYE[0]) / 2)
#: crop geometries by name: aligned (align_face, every synthetic set) | tight (the MEGC2019 composite)
FACE_CROPS: dict[str, FaceCrop] = {
    "aligned": FACE_CROPS_REF,
    "tight": FaceCrop("tight", eye_y=0.325, mouth_y=0.775, eye_dx=0.21),
}


def face_crop(name: str) -> FaceCrop:
    """The crop geometry ``name``; ValueError lists the valid names."""
    if name not in FACE_CROPS:
        raise ValueError(f"unknown face crop {name!r}; valid: {', '.join(FACE_CROPS)}")
    return FACE_CROPS[name]


@dataclass(frozen=True)
class Region:
    name: str
    aus: tuple[int, ...]  # AU numbers, a subset of AU_NODES, in node order
    points: tuple[tuple[float, float], ...]  # patch centres, normalised (x, y)


REGIONS: tuple[Region, ...] = (
    Region(
        "brows",
        (1, 2, 4),
        (
            (0.40, 0.27),
            (0.60, 0.27),  # inner brows (AU1, AU4)
            (0.27, 0.25),
            (0.73, 0.25),  # outer brows (AU2)
            (0.50, 0.30),  # glabella (AU4 furrows)
        ),
    ),
    Region(
        "eyes_cheeks",
        (5, 6, 7),
        (
            (0.32, 0.35),
            (0.68, 0.35),  # upper lids (AU5)
            (0.32, 0.43),
            (0.68, 0.43),  # lower lids (AU7)
            (0.27, 0.56),
            (0.73, 0.56),  # cheeks (AU6)
        ),
    ),
    Region(
        "nose_upper_lip",
        (9, 10),
        (
            (0.50, 0.45),  # nasal root (AU9 wrinkles)
            (0.41, 0.58),
            (0.59, 0.58),  # nose wings (AU9)
            (0.50, 0.69),  # upper lip (AU10)
        ),
    ),
    Region(
        "mouth_chin",
        (12, 14, 15, 17),
        (
            (0.35, 0.76),
            (0.65, 0.76),  # lip corners (AU12, AU14, AU15)
            (0.50, 0.82),  # lower lip (AU17)
            (0.50, 0.93),  # chin (AU17)
        ),
    ),
)

#: Side of a patch as a fraction of the crop's side.
PATCH_FRACTION = 0.14


def au_index(au: int) -> int:
    """Node index of an AU number; ValueError names the AUs that are nodes."""
    try:
        return AU_NODES.index(au)
    except ValueError:
        raise ValueError(f"AU{au} is not a graph node; nodes are {', '.join(f'AU{a}' for a in AU_NODES)}") from None


def all_points(crop: str = "aligned") -> np.ndarray:
    """All patch centres in region order for crop geometry ``crop``, shape (P, 2) as (x, y) fractions."""
    pts = np.array([p for r in REGIONS for p in r.points], dtype=np.float64)
    return pts if crop == "aligned" else face_crop(crop).map(pts)


def region_of_point() -> np.ndarray:
    """Region index of each patch point, shape (P,)."""
    return np.array([i for i, r in enumerate(REGIONS) for _ in r.points], dtype=np.int64)


def patch_boxes(size: int, patch: int | None = None, crop: str = "aligned") -> np.ndarray:
    """Integer pixel boxes (y0, x0) of side ``patch`` for an image of side ``size``.

    Boxes are centred on the points of crop geometry ``crop`` (:data:`FACE_CROPS`) and shifted
    inside the image. ``patch`` defaults to ``round(PATCH_FRACTION * size)`` (at least 3).
    Returns shape (P, 2).
    """
    if patch is None:
        patch = max(3, round(PATCH_FRACTION * size))
    if not 1 <= patch <= size:
        raise ValueError(f"patch side must be in [1, {size}] (got {patch})")
    pts = all_points(crop) * size
    y0 = np.clip(np.round(pts[:, 1] - patch / 2), 0, size - patch).astype(np.int64)
    x0 = np.clip(np.round(pts[:, 0] - patch / 2), 0, size - patch).astype(np.int64)
    return np.stack([y0, x0], axis=1)


def patch_side(size: int, patch: int | None = None) -> int:
    """Side of the patches that :func:`patch_boxes` cuts for an image of side ``size``."""
    return patch if patch is not None else max(3, round(PATCH_FRACTION * size))
