"""Flow images: (u, v, strain) stacked as float32 (3, S, S), normalised per sample.

Normalisation (per sample, after resizing to S x S):

- u and v are divided by the same scale ``m_f``, the 99th percentile of the flow magnitude
  sqrt(u^2 + v^2), then clipped to [-1, 1]. Zero stays zero, so the *sign* (direction) of the
  motion is kept and u, v keep their relative size.
- strain (>= 0) is divided by its own 99th percentile ``m_s`` and clipped to [0, 1].
- Both scales have a floor (:data:`FLOW_FLOOR` px, :data:`STRAIN_FLOOR`), so a still clip is
  not blown up to full range, and no division by zero happens.

The percentile (not the maximum) keeps one noisy pixel from squashing the rest. The absolute
size of the motion is thus *not* kept, as in the shared MEGC2019 images (which are min-max
normalised per channel to 8 bits). Resizing uses area averaging when shrinking and bilinear
interpolation when enlarging; flow vectors are rescaled by the size ratio before normalising
(which the per-sample normalisation then cancels, but it keeps the floor in output pixels).
"""

from __future__ import annotations

import cv2
import numpy as np

from mer.flow.strain import optical_strain

FLOW_FLOOR = 0.05  # pixels at the output size
STRAIN_FLOOR = 0.01
PERCENTILE = 99.0


def resize_channels(chans: np.ndarray, size: int) -> np.ndarray:
    """Resize (H, W, C) float array to (size, size, C)."""
    h, w = chans.shape[:2]
    interp = cv2.INTER_AREA if size < min(h, w) else cv2.INTER_LINEAR
    out = cv2.resize(np.ascontiguousarray(chans, dtype=np.float32), (size, size), interpolation=interp)
    return out.reshape(size, size, -1)


def normalise(u: np.ndarray, v: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """Stack (u, v, strain) into (3, S, S) float32 with the normalisation described above."""
    mag = np.sqrt(u.astype(np.float64) ** 2 + v.astype(np.float64) ** 2)
    m_f = max(float(np.percentile(mag, PERCENTILE)), FLOW_FLOOR)
    m_s = max(float(np.percentile(strain, PERCENTILE)), STRAIN_FLOOR)
    out = np.empty((3,) + u.shape, dtype=np.float32)
    out[0] = np.clip(u / m_f, -1.0, 1.0)
    out[1] = np.clip(v / m_f, -1.0, 1.0)
    out[2] = np.clip(strain / m_s, 0.0, 1.0)
    return out


def flow_image(flow: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) float32 image of a (H, W, 2) flow in pixels: u, v, optical strain.

    Strain is computed at the flow's own resolution, then all three channels are resized.
    """
    if flow.ndim != 3 or flow.shape[2] != 2:
        raise ValueError(f"flow must be (H, W, 2) (got {flow.shape})")
    if size < 2:
        raise ValueError(f"size must be >= 2 (got {size})")
    strain = optical_strain(flow)
    chans = np.dstack([flow[..., 0], flow[..., 1], strain])
    small = resize_channels(chans, size)
    ratio = size / float(flow.shape[1])
    return normalise(small[..., 0] * ratio, small[..., 1] * ratio, small[..., 2])


def resize_flow_image(img: np.ndarray, size: int) -> np.ndarray:
    """Resize a (3, S, S) flow image to (3, size, size), keeping the value ranges."""
    if img.ndim != 3 or img.shape[0] != 3:
        raise ValueError(f"flow image must be (3, S, S) (got {img.shape})")
    if img.shape[1] == size and img.shape[2] == size:
        return img.astype(np.float32, copy=False)
    out = resize_channels(np.transpose(img, (1, 2, 0)), size)
    out = np.transpose(out, (2, 0, 1)).copy()
    out[:2] = np.clip(out[:2], -1.0, 1.0)
    out[2] = np.clip(out[2], 0.0, 1.0)
    return out.astype(np.float32)
