"""Model input from two rendered frames, exactly as the matching reader path produces it.

- ``casme2`` layout (frames + sheet): the frames are stored (JPEG or BMP bytes), decoded to grey
  as :mod:`mer.data.frames` does, and turned into a flow image by
  :func:`mer.data.features.frames_flow_image` with the settings ``load_arrays(..., "casme2",
  size=size)`` uses (Farneback, template landmarks). Same bytes in, same array out.
- ``composite`` layout (28x28 PNGs): Farneback flow onset -> apex on the aligned crop at its
  native side, optical strain at that side, u, v and strain resized to 28x28 (area averaging),
  each channel min-max normalised to 0..255 and rounded to 8 bits (:func:`composite_pixels`,
  what the PNG stores, RGB = u, v, strain), then decoded with the arithmetic of
  :func:`mer.data.readers.composite.decode_flow_png` (u, v: x / 127.5 - 1; strain: x / 255) and
  resized to ``size`` as :func:`mer.data.features.load_precomputed` does.
"""

from __future__ import annotations

import numpy as np

from mer.data.features import FlowSettings, frames_flow_image
from mer.data.readers.composite import NATIVE_SIZE
from mer.flow.image import resize_channels, resize_flow_image
from mer.flow.methods import compute_flow
from mer.flow.strain import optical_strain


def composite_pixels(onset: np.ndarray, apex: np.ndarray) -> np.ndarray:
    """(28, 28, 3) uint8 RGB (u, v, strain), min-max normalised per channel, from two grey frames."""
    flow = compute_flow(onset, apex, "farneback")
    chans = resize_channels(np.dstack([flow[..., 0], flow[..., 1], optical_strain(flow)]), NATIVE_SIZE)
    out = np.empty(chans.shape, dtype=np.uint8)
    for c in range(3):
        x = chans[..., c].astype(np.float64)
        lo, hi = float(x.min()), float(x.max())
        scaled = (x - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(x)
        out[..., c] = np.clip(np.round(scaled), 0, 255).astype(np.uint8)
    return out


def decode_composite_pixels(rgb: np.ndarray) -> np.ndarray:
    """(3, 28, 28) float32 from RGB uint8 pixels, with decode_flow_png's arithmetic."""
    f = rgb.astype(np.float32)
    out = np.empty((3,) + rgb.shape[:2], dtype=np.float32)
    out[0] = f[..., 0] / 127.5 - 1.0
    out[1] = f[..., 1] / 127.5 - 1.0
    out[2] = f[..., 2] / 255.0
    return out


def model_input(layout: str, onset: np.ndarray, apex: np.ndarray, size: int | None = None) -> np.ndarray:
    """(3, S, S) float32 flow image of two decoded grey frames for ``layout`` (see module doc).

    ``size`` None: the layout's native side (128 for casme2, 28 for composite), as load_arrays.
    """
    if layout == "casme2":
        return frames_flow_image(onset, apex, FlowSettings(size=size or 128))
    if layout == "composite":
        img = decode_composite_pixels(composite_pixels(onset, apex))
        return resize_flow_image(img, size or NATIVE_SIZE)
    raise ValueError(f"layout must be casme2 or composite (got {layout!r})")
