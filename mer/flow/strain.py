"""Optical strain: the magnitude of the flow field's infinitesimal strain tensor.

For flow (u, v) the strain tensor is

    eps = [[du/dx,                 0.5 (du/dy + dv/dx)],
           [0.5 (dv/dx + du/dy),   dv/dy              ]]

and the optical strain magnitude (Shreve et al. 2011; Liong et al. 2018) is

    |eps| = sqrt(eps_xx^2 + eps_yy^2 + eps_xy^2 + eps_yx^2).

It responds to local deformation (skin stretching) and not to rigid translation, which is why
micro-expression pipelines use it beside the flow. Derivatives are central differences
(``np.gradient``), one-sided at the border. Pure function.
"""

from __future__ import annotations

import numpy as np


def optical_strain(flow: np.ndarray) -> np.ndarray:
    """Strain magnitude (H, W) float32 of a flow field (H, W, 2) in pixels."""
    flow = np.asarray(flow)
    if flow.ndim != 3 or flow.shape[2] != 2 or min(flow.shape[:2]) < 2:
        raise ValueError(f"flow must be (H>=2, W>=2, 2) (got {flow.shape})")
    u = flow[..., 0].astype(np.float64)
    v = flow[..., 1].astype(np.float64)
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    exy = 0.5 * (du_dy + dv_dx)
    return np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2).astype(np.float32)
