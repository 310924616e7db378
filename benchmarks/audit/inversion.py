"""Gradient inversion by gradient matching, with iDLG label inference.

Deep Leakage from Gradients (Zhu et al. 2019, https://arxiv.org/abs/1906.08935) optimises a dummy
input x' so that its gradient matches an observed one; Inverting Gradients (Geiping et al. 2020,
https://arxiv.org/abs/2003.14053) makes this work on real networks with a cosine distance, a
total-variation prior, signed Adam steps and a box constraint:

    x* = argmin_{x' in [lo, hi]^d}  1 - <grad L(x', y), g> / (||grad L(x', y)|| ||g||)  +  a TV(x')

where both gradients are over all parameters jointly (flattened). The label y is not optimised:
iDLG (Zhao et al. 2020, https://arxiv.org/abs/2001.02610) reads it from the last layer. With a
softmax cross-entropy, the gradient of the last bias is ``w * (p - onehot(y))``: negative only at
the true class (for one sample), so ``y = argmin(bias_grad)``; without a bias, the rows of the
last weight gradient are ``(p_k - y_k) h`` with features ``h >= 0`` after a ReLU, and the row sum
is negative only at y.

The attacker may try several random starts and keeps the one with the lowest matching loss (a
quantity it can observe); it never looks at the true input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import Tensor, nn

LossFn = Callable[[tuple, Tensor], Tensor]  # (model outputs, labels (B,)) -> scalar batch mean


@dataclass(frozen=True)
class InversionConfig:
    iterations: int = 400  # Adam steps per restart (fixed budget)
    lr: float = 0.1  # Adam step size on x'
    tv_weight: float = 1e-2  # weight a of the total-variation prior
    restarts: int = 1  # random starts; the lowest matching loss wins
    bounds: tuple[float, float] = (-1.0, 1.0)  # box of the input values (the flow images' range)
    signed: bool = True  # Adam on sign(dL/dx') as Inverting Gradients does
    seed: int = 0

    def problems(self) -> list[str]:
        p = []
        for name in ("iterations", "restarts"):
            if getattr(self, name) < 1:
                p.append(f"{name} must be >= 1 (got {getattr(self, name)})")
        if not self.lr > 0:
            p.append(f"lr must be > 0 (got {self.lr})")
        if self.tv_weight < 0:
            p.append(f"tv_weight must be >= 0 (got {self.tv_weight})")
        if not self.bounds[0] < self.bounds[1]:
            p.append(f"bounds must be (lo, hi) with lo < hi (got {self.bounds})")
        return p

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Inversion:
    """Result of :func:`invert_gradient`."""

    x: Tensor  # (1, C, H, W) the reconstruction (detached)
    matching_loss: float  # final cosine distance of its gradient to the target (no TV term)
    restart: int  # which random start won
    seconds: float


def parameter_gradient(
    model: nn.Module, loss_fn: LossFn, x: Tensor, y: Tensor, create_graph: bool = False
) -> list[Tensor]:
    """Gradient of ``loss_fn(model(x), y)`` with respect to every trainable parameter, in order."""
    params = [p for p in model.parameters() if p.requires_grad]
    loss = loss_fn(model(x), y)
    return list(torch.autograd.grad(loss, params, create_graph=create_graph, allow_unused=False))


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """One (P,) vector of the tensors in order (the layout of a federated update vector)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: Tensor | np.ndarray, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a (P,) vector into tensors shaped like ``like`` (inverse of :func:`flatten`)."""
    v = torch.as_tensor(np.asarray(vector) if not isinstance(vector, Tensor) else vector)
    total = sum(t.numel() for t in like)
    if v.ndim != 1 or v.numel() != total:
        raise ValueError(f"expected a vector of {total} values for {len(like)} tensors (got shape {tuple(v.shape)})")
    out, at = [], 0
    for t in like:
        out.append(v[at : at + t.numel()].reshape(t.shape).to(t.dtype))
        at += t.numel()
    return out


def cosine_distance(grads: Sequence[Tensor], target: Sequence[Tensor]) -> Tensor:
    """1 - cos(grads, target), both taken as one flattened vector over all tensors."""
    dot = sum((g * t).sum() for g, t in zip(grads, target, strict=True))
    gn = sum((g * g).sum() for g in grads)
    tn = sum((t * t).sum() for t in target)
    return 1.0 - dot / (gn.sqrt() * tn.sqrt() + 1e-12)


def total_variation(x: Tensor) -> Tensor:
    """Mean absolute difference between vertical and horizontal neighbours of (B, C, H, W)."""
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (x[..., :, 1:] - x[..., :, :-1]).abs().mean()


def infer_label(last_weight_grad: Tensor, last_bias_grad: Tensor | None = None) -> int:
    """iDLG label inference from the last Linear layer's gradient (see the module docstring).

    Args:
        last_weight_grad: (K, F) gradient of the classifier weight.
        last_bias_grad: (K,) gradient of the classifier bias, if it has one (preferred).
    """
    if last_weight_grad.ndim != 2:
        raise ValueError(f"expected a (K, F) classifier weight gradient (got shape {tuple(last_weight_grad.shape)})")
    if last_bias_grad is not None:
        if last_bias_grad.shape != last_weight_grad.shape[:1]:
            raise ValueError(
                f"bias gradient shape {tuple(last_bias_grad.shape)} does not match {last_weight_grad.shape[0]} classes"
            )
        return int(torch.argmin(last_bias_grad))
    return int(torch.argmin(last_weight_grad.sum(dim=1)))


def invert_gradient(
    model: nn.Module,
    loss_fn: LossFn,
    target: Sequence[Tensor],
    label: int,
    shape: tuple[int, ...],
    config: InversionConfig = InversionConfig(),
) -> Inversion:
    """Reconstruct one input of ``shape`` (e.g. (1, 3, 28, 28)) whose gradient matches ``target``.

    ``model`` must be in the mode the client trained in (deterministic: no dropout is assumed);
    its parameters are not changed. ``target`` is the observed gradient, one tensor per trainable
    parameter (any positive scale: the cosine distance ignores it).
    """
    if config.problems():
        raise ValueError("invalid InversionConfig: " + "; ".join(config.problems()))
    params = [p for p in model.parameters() if p.requires_grad]
    if len(target) != len(params) or any(t.shape != p.shape for t, p in zip(target, params, strict=False)):
        raise ValueError(
            f"target gradient must have one tensor per trainable parameter "
            f"({[tuple(p.shape) for p in params]}; got {[tuple(t.shape) for t in target]})"
        )
    target = [t.detach() for t in target]
    y = torch.tensor([label], dtype=torch.int64)
    lo, hi = config.bounds
    gen = torch.Generator().manual_seed(config.seed)
    steps = config.iterations
    milestones = [int(steps * f) for f in (3 / 8, 5 / 8, 7 / 8)]
    start = time.perf_counter()
    best: tuple[float, Tensor, int] | None = None
    for restart in range(config.restarts):
        x = ((torch.rand(shape, generator=gen) * (hi - lo) + lo) * 0.5).requires_grad_(True)
        opt = torch.optim.Adam([x], lr=config.lr)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=milestones, gamma=0.1)
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            match = cosine_distance(parameter_gradient(model, loss_fn, x, y, create_graph=True), target)
            loss = match + config.tv_weight * total_variation(x) if config.tv_weight else match
            (gx,) = torch.autograd.grad(loss, [x])
            x.grad = gx.sign() if config.signed else gx
            opt.step()
            sched.step()
            with torch.no_grad():
                x.clamp_(lo, hi)
        final = float(cosine_distance(parameter_gradient(model, loss_fn, x, y), target))
        if not math.isfinite(final):
            final = math.inf
        if best is None or final < best[0]:
            best = (final, x.detach().clone(), restart)
    loss_value, x_best, won = best  # type: ignore[misc]  # restarts >= 1, so best is set
    return Inversion(x_best, loss_value, won, time.perf_counter() - start)


def image_similarity(recon: Tensor | np.ndarray, truth: Tensor | np.ndarray, value_range: float = 2.0) -> dict:
    """Cosine similarity, MSE and PSNR (peak = ``value_range``) of two images of the same shape."""
    r = np.asarray(recon, np.float64).reshape(-1)
    t = np.asarray(truth, np.float64).reshape(-1)
    if r.shape != t.shape:
        raise ValueError(f"images differ in size ({r.size} vs {t.size} values)")
    cos = float(r @ t / (np.linalg.norm(r) * np.linalg.norm(t) + 1e-12))
    mse = float(np.mean((r - t) ** 2))
    psnr = float(10 * np.log10(value_range**2 / mse)) if mse > 0 else math.inf
    return {"cosine": cos, "mse": mse, "psnr": psnr}
