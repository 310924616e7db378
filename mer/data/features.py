"""From a sample record to its flow image: read, align, flow, strain, normalise, cache.

For a frame record:

1. read the onset and apex file bytes (the cache key hashes them);
2. on a cache hit, return the stored image: no decoding, no landmarks, no flow;
3. otherwise decode both frames to grayscale, find the eyes on the *onset* frame with the
   chosen landmark backend, warp both frames with that one similarity transform to an aligned
   square crop of side ``work_size`` (so alignment adds no motion), compute onset->apex flow,
   and turn it into a (3, size, size) image (see :mod:`mer.flow.image`).

Precomputed flow images (the composite, manifests) are decoded and resized; they are not cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mer.data.errors import DataError
from mer.data.frames import decode_gray, read_bytes
from mer.data.readers.composite import decode_flow_png
from mer.data.records import SampleRecord
from mer.face.align import AlignParams, alignment_matrix, apply_alignment
from mer.face.landmarks import FaceNotFoundError, get_backend
from mer.flow.cache import FlowCache, content_key
from mer.flow.image import flow_image, resize_flow_image
from mer.flow.methods import check_method, compute_flow


@dataclass(frozen=True)
class FlowSettings:
    size: int = 128  # output side S of the flow image
    method: str = "farneback"  # a name in mer.flow.methods.FLOW_METHODS
    landmarks: str = "template"  # a name in mer.face.landmarks.BACKENDS
    work_size: int | None = None  # aligned crop side the flow is computed at; None: max(size, 128)

    @property
    def align(self) -> AlignParams:
        return AlignParams(size=self.work_size or max(self.size, 128))

    def key(self) -> str:
        return f"{self.method}|{self.size}|{self.landmarks}|{self.align.key()}"

    def validate(self) -> None:
        check_method(self.method)
        get_backend(self.landmarks)  # ValueError lists the valid names; ImportError says what to install
        if self.size < 2:
            raise ValueError(f"size must be >= 2 (got {self.size})")


def aligned_pair(onset: np.ndarray, apex: np.ndarray, settings: FlowSettings) -> tuple[np.ndarray, np.ndarray]:
    """Both frames warped by the transform that aligns the onset frame's eyes to the template."""
    if onset.shape != apex.shape:
        raise DataError(
            f"onset and apex frames differ in size ({onset.shape[1]}x{onset.shape[0]} vs "
            f"{apex.shape[1]}x{apex.shape[0]})"
        )
    try:
        lm = get_backend(settings.landmarks).detect(onset)
    except FaceNotFoundError as exc:
        raise DataError(f"landmarks ({settings.landmarks}): {exc}") from None
    params = settings.align
    m = alignment_matrix(lm.left_eye, lm.right_eye, params)
    return apply_alignment(onset, m, params.size), apply_alignment(apex, m, params.size)


def frames_flow_image(onset: np.ndarray, apex: np.ndarray, settings: FlowSettings) -> np.ndarray:
    """(3, S, S) float32 flow image of two decoded grayscale frames."""
    a, b = aligned_pair(onset, apex, settings)
    return flow_image(compute_flow(a, b, settings.method), settings.size)


def load_precomputed(path: Path, size: int, shown: str, expect: int | None) -> np.ndarray:
    if path.suffix.lower() == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot load flow array ({exc})", file=shown) from None
        if arr.ndim != 3 or arr.shape[0] != 3 or arr.shape[1] != arr.shape[2]:
            raise DataError(f"expected a (3, S, S) flow array (got {arr.shape})", file=shown)
        img = arr.astype(np.float32)
    else:
        img = decode_flow_png(path, shown, expect)
    return resize_flow_image(img, size)


def record_flow_image(
    rec: SampleRecord, settings: FlowSettings, cache: FlowCache | None = None, root: Path | None = None
) -> np.ndarray:
    """The (3, size, size) float32 flow image of one record; DataError naming the file if bad."""

    def shown(p: Path) -> str:
        return str(p.relative_to(root)) if root is not None and p.is_relative_to(root) else str(p)

    if rec.flow_image is not None:
        # readers validate the expected size (the composite's 28x28); here any square image is fine
        return load_precomputed(rec.flow_image, settings.size, shown(rec.flow_image), None)
    if rec.onset is None or rec.apex is None:
        raise DataError("record has neither frames nor a flow image", file=rec.source)
    onset_b = read_bytes(rec.onset, "onset frame")
    apex_b = read_bytes(rec.apex, "apex frame")
    key = content_key(onset_b, apex_b, settings.key())
    shape = (3, settings.size, settings.size)
    if cache is not None:
        hit = cache.get(key, shape)
        if hit is not None:
            return hit
    onset = decode_gray(onset_b, Path(shown(rec.onset)))
    apex = decode_gray(apex_b, Path(shown(rec.apex)))
    try:
        img = frames_flow_image(onset, apex, settings)
    except DataError as err:
        raise DataError(err.message, file=shown(rec.onset)) from None
    if cache is not None:
        cache.put(key, img)
    return img
