"""Per-region patch tensors cut from flow images at the template patch points.

The boxes come from :func:`mer.face.regions.patch_boxes`; the patches keep region order
(brows, eyes/cheeks, nose/upper lip, mouth/chin), so :func:`mer.face.regions.region_of_point`
tells which region each of the P patches belongs to.
"""

from __future__ import annotations

import numpy as np

from mer.face.regions import patch_boxes, patch_side


def extract_patches(flow: np.ndarray, patch: int | None = None) -> np.ndarray:
    """Patches of a flow image (3, S, S) -> (P, 3, p, p), or a batch (N, 3, S, S) -> (N, P, 3, p, p).

    ``patch`` is the side p (default: regions.PATCH_FRACTION of S, at least 3).
    """
    flow = np.asarray(flow)
    if flow.ndim not in (3, 4) or flow.shape[-3] != 3 or flow.shape[-1] != flow.shape[-2]:
        raise ValueError(f"expected a flow image (3, S, S) or a batch (N, 3, S, S) (got {flow.shape})")
    size = flow.shape[-1]
    boxes = patch_boxes(size, patch)
    p = patch_side(size, patch)
    batch = flow if flow.ndim == 4 else flow[None]  # (N, 3, S, S)
    out = np.stack([batch[:, :, y0 : y0 + p, x0 : x0 + p] for y0, x0 in boxes], axis=1)  # (N, P, 3, p, p)
    return out if flow.ndim == 4 else out[0]
