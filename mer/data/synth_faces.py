"""Real faces that ship inside installed packages, as aligned neutral faces per subject.

Sources (all offline, inside wheels):

- ``astronaut``: scikit-image ``data.astronaut()`` (Eileen Collins, NASA, public domain), 512x512;
- ``grace_hopper``: matplotlib's ``sample_data/grace_hopper.jpg`` (US Navy photo, public domain);
- ``lfw/<i>``: the 100 face images of scikit-image ``data.lfw_subset()`` (25x25 grayscale crops
  from Labeled Faces in the Wild; images 100-199 there are non-faces and are not used),
  upsampled.

**Identity pools.** The faces are split once, by source, into two disjoint pools:
:data:`EVAL_FACES` (the astronaut, Grace Hopper and ``lfw/0`` .. ``lfw/69``: 72 faces) for every
data set a model is evaluated on -- the embedded default set and every preset -- and
:data:`PRETRAIN_FACES` (``lfw/70`` .. ``lfw/99``: 30 faces) for the public pre-training corpus
only (:func:`face_pool`). A test asserts the pools share no source image. (LFW may hold one
person under two images; the split is by image, which is what this package can check.)

Eye centres were measured once on each source (Haar eye cascade, checked by eye). Each subject
gets a base face, then its own alignment error (eye shift, scale, roll), mirror flip,
brightness, contrast, gamma and colour tint, and a fixed fine skin texture that moves with the
skin (tracking needs texture; the LFW upsamples are smooth otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from mer.face.align import AlignParams, alignment_matrix

LFW_EYES = ((7.0, 9.0), (16.2, 9.0))
#: first LFW index of the pre-training pool; LFW images below it (and the two portraits) are for evaluation sets
PRETRAIN_LFW_START = 70
POOLS = ("eval", "pretrain")


@dataclass(frozen=True)
class FaceSource:
    name: str
    image: np.ndarray  # BGR uint8
    left_eye: tuple[float, float]
    right_eye: tuple[float, float]


@lru_cache(maxsize=1)
def face_sources() -> tuple[FaceSource, ...]:
    """The astronaut, Grace Hopper, then the 100 LFW faces."""
    from matplotlib import cbook
    from skimage import data

    astro = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    grace_path = cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
    grace = cv2.imread(str(grace_path), cv2.IMREAD_COLOR)
    if grace is None:
        raise FileNotFoundError(f"matplotlib sample image not readable: {grace_path}")
    out = [
        FaceSource("astronaut", astro, (204.0, 102.0), (246.5, 104.0)),
        FaceSource("grace_hopper", grace, (225.0, 190.0), (302.0, 188.0)),
    ]
    lfw = data.lfw_subset()[:100]
    for i, face in enumerate(lfw):
        g = np.clip(face * 255.0 + 0.5, 0, 255).astype(np.uint8)
        out.append(FaceSource(f"lfw/{i}", cv2.cvtColor(g, cv2.COLOR_GRAY2BGR), *LFW_EYES))
    return tuple(out)


def face_pool(pool: str) -> tuple[FaceSource, ...]:
    """The faces of one identity pool: ``"eval"`` (data sets models are scored on) or ``"pretrain"``."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {', '.join(POOLS)} (got {pool!r})")
    lfw_start = 2  # face_sources(): astronaut, grace_hopper, then lfw/0..99
    cut = lfw_start + PRETRAIN_LFW_START
    faces = face_sources()
    return faces[:cut] if pool == "eval" else faces[cut:]


EVAL_FACES = ("astronaut", "grace_hopper") + tuple(f"lfw/{i}" for i in range(PRETRAIN_LFW_START))
PRETRAIN_FACES = tuple(f"lfw/{i}" for i in range(PRETRAIN_LFW_START, 100))


def subject_face(
    source: FaceSource, rng: np.random.Generator, size: int = 128, texture: tuple[float, float] = (2.5, 5.0)
) -> tuple[np.ndarray, dict]:
    """A subject's neutral aligned face (size x size BGR float32, 0..255) and its variation settings.

    ``texture`` is the range of the skin texture's std (grey levels) the subject's is drawn from.
    """
    params = AlignParams(size=size)
    jitter = {
        "eye_shift_px": rng.normal(0.0, 1.5, 2).round(2).tolist(),
        "scale": float(np.exp(rng.normal(0.0, 0.04))),
        "roll_deg": float(rng.normal(0.0, 2.0)),
        "flip": bool(rng.random() < 0.5),
        "brightness": float(rng.uniform(-25, 25)),
        "contrast": float(rng.uniform(0.75, 1.25)),
        "gamma": float(np.exp(rng.normal(0.0, 0.15))),
        "tint": rng.uniform(0.85, 1.15, 3).round(3).tolist(),
        "texture": float(rng.uniform(*texture)),
    }
    (lx, ly), (rx, ry) = source.left_eye, source.right_eye
    m = alignment_matrix((lx, ly), (rx, ry), params)
    # subject-specific alignment error: a small similarity about the crop centre, then a shift
    c = size / 2.0
    th = np.radians(jitter["roll_deg"])
    s = jitter["scale"]
    r = s * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
    extra = np.column_stack([r, np.array([c, c]) - r @ np.array([c, c]) + np.array(jitter["eye_shift_px"])])
    m = extra @ np.vstack([m, [0, 0, 1]])
    face = cv2.warpAffine(source.image, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
    if jitter["flip"]:
        face = face[:, ::-1]
    f = face.astype(np.float32) / 255.0
    f = np.power(np.clip(f, 0, 1), jitter["gamma"]) * 255.0
    f = (f - 128.0) * jitter["contrast"] + 128.0 + jitter["brightness"]
    f *= np.asarray(jitter["tint"], dtype=np.float32)[None, None, :]
    tex = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32), (0, 0), 1.0)
    tex *= jitter["texture"] / max(float(tex.std()), 1e-6)
    f += tex[..., None]
    return np.clip(f, 0, 255).astype(np.float32), jitter
