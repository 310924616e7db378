r"""Fused per-sample clipping: DP-SGD's clipped gradient sum in one pass, without Opacus's optimizer.

For a batch of B records with per-sample gradients g_i, DP-SGD (Abadi et al. 2016) releases

.. math::
    \tilde g = \frac{1}{B_{exp}}\Big(\sum_i c_i\, g_i + \mathcal N(0, \sigma^2 C^2 I)\Big),
    \qquad c_i = \min\Big(1, \frac{C}{\lVert g_i \rVert_2 + 10^{-6}}\Big)

(the clip factor exactly as Opacus's ``DPOptimizer`` computes it). Opacus's ``hooks`` mode gets
there by letting autograd compute the ordinary gradients (then unused), writing every per-sample
gradient into a zeroed ``p.grad_sample``, and clipping tensor by tensor. :class:`FusedClipper`
computes the same :math:`\sum_i c_i g_i` straight into one flat buffer:

- the backward is ``torch.autograd.grad(loss, outputs of the parameterised layers)``: autograd
  computes no parameter gradient at all, only what flows between layers;
- ``nn.Linear`` with input A_i (T, in) and output gradient G_i (T, out): the squared norm of
  g_i = G_iᵀA_i by the "ghost" identity ||G_iᵀA_i||² = <A_iA_iᵀ, G_iG_iᵀ> (Goodfellow 2015;
  Li et al. 2022, arXiv 2110.05679) and the clipped sum as one matmul (c ⊙ G)ᵀA (book-keeping,
  Bu et al. 2023, arXiv 2210.00038): no per-sample gradient is formed. Where a per-sample
  gradient is the cheaper route (T (in + out) >= in * out, Bu et al. 2022, arXiv 2205.10683,
  "mixed ghost clipping") it is formed by one batched matmul;
- ``nn.Conv1d``/``nn.Conv2d`` are the same product on unfolded patches (a strided view for 1 x 1
  kernels), routed like Linear (:func:`_conv_route`); where per-sample gradients are the cheaper
  route they come from one grouped convolution with the batch folded into the groups
  (:meth:`FusedClipper._conv_materialised`), then one matrix-vector product for the clipped sum;
- ``nn.GroupNorm`` (sum_s x̂ g per sample), ``nn.LayerNorm`` and ``nn.Conv3d`` (Opacus's own
  per-sample gradient functions): per-sample gradients, then one matrix-vector product each.

All squared norms add up in one (B,) vector; the clipped sums land in one flat buffer whose slices
become the parameters' ``.grad``, so the noise is one draw for all parameters.

Supported: every parameter that requires grad belongs (directly) to one of :data:`SUPPORTED` and
is used only in that module's forward -- what Opacus's hooks assume too (a weight used through
``F.linear(x, other.weight)`` would get no per-sample gradient in either). Every trainable layer
must see the batch on the first axis of its input (Opacus's ``batch_first``; a layer that sees
another number of rows is refused). A module may be called several times per forward (its
contributions are summed per sample before the norm). Outputs modified in place after the layer
are refused (the gradient would belong to another tensor). :func:`unsupported` lists what keeps a
model off this path (``dp_train`` then uses Opacus hooks).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from opacus.grad_sample.conv import compute_conv_grad_sample
from opacus.grad_sample.layer_norm import compute_layer_norm_grad_sample
from opacus.utils.tensor_utils import unfold2d
from torch import Tensor, nn

__all__ = ["SUPPORTED", "FusedClipper", "clip_factors", "unsupported"]

#: module type -> Opacus per-sample gradient function (Linear, Conv1d and Conv2d are handled here)
_SAMPLERS = {
    nn.Conv3d: compute_conv_grad_sample,
    nn.GroupNorm: None,  # :func:`_group_norm_grad_sample` (set below)
    nn.LayerNorm: compute_layer_norm_grad_sample,
}
SUPPORTED: tuple[type[nn.Module], ...] = (nn.Linear, nn.Conv1d, nn.Conv2d, *_SAMPLERS)

#: a clipped sum left until the clip factors are known: ("mv", view, per-sample gradients, None), or
#: ("bk" / "bk-groups", view, A, G) for the book-keeping product (c ⊙ G)ᵀ A
_Deferred = tuple[Literal["mv"], Tensor, Tensor, None] | tuple[Literal["bk", "bk-groups"], Tensor, Tensor, Tensor]


def clip_factors(sq_norms: Tensor, max_grad_norm: float) -> Tensor:
    """c_i = min(1, C / (||g_i|| + 1e-6)) from squared per-sample norms (Opacus's formula)."""
    return (max_grad_norm / (sq_norms.clamp(min=0).sqrt() + 1e-6)).clamp(max=1.0)  # ghost sums can round below 0


def _trainable(module: nn.Module) -> list[nn.Parameter]:
    return [p for p in module.parameters(recurse=False) if p.requires_grad]


def unsupported(module: nn.Module) -> list[str]:
    """Why ``module`` cannot use :class:`FusedClipper` (empty list: it can)."""
    problems: list[str] = []
    owner: dict[int, str] = {}
    params = [p for p in module.parameters() if p.requires_grad]
    if not params:
        problems.append("no parameter requires grad")
    for name, m in module.named_modules():
        own = _trainable(m)
        if own and type(m) not in SUPPORTED:
            problems.append(f"{name or 'the module'} ({type(m).__name__}) owns trainable parameters")
        elif own and getattr(m, "padding_mode", "zeros") != "zeros":
            problems.append(f"{name} pads with {m.padding_mode!r} (only zero padding is supported)")
        for p in own:
            if id(p) in owner:
                problems.append(f"{name} shares a parameter with {owner[id(p)]}")
            owner[id(p)] = name
    kinds = {(p.dtype, p.device) for p in params}
    if len(kinds) > 1:
        problems.append(f"trainable parameters mix dtypes/devices {sorted(map(str, kinds))}")
    return problems


class FusedClipper:
    """Per-sample clipped gradient sums of ``module``'s trainable parameters, in one flat buffer.

    Args:
        module: the model; see :func:`unsupported` for what it may contain.
        max_grad_norm: the clipping bound C.

    Use: ``flat = clipper.clipped_sum(loss)`` after ``loss = loss_fn(module(x), ...)`` (a batch
    mean, as Opacus's ``loss_reduction="mean"``); add noise to ``flat`` and scale it in place,
    then :meth:`assign_grads` makes every ``p.grad`` a view of it for the optimizer.
    :meth:`close` removes the hooks. ``flat`` is reused: its contents change at the next call.
    """

    def __init__(self, module: nn.Module, *, max_grad_norm: float) -> None:
        problems = unsupported(module)
        if problems:
            raise ValueError("FusedClipper: " + "; ".join(problems))
        self.max_grad_norm = float(max_grad_norm)
        self.params = [p for p in module.parameters() if p.requires_grad]
        ref = self.params[0]
        self.flat = torch.zeros(sum(p.numel() for p in self.params), dtype=ref.dtype, device=ref.device)
        self._views: dict[int, Tensor] = {}
        offset = 0
        for p in self.params:
            self._views[id(p)] = self.flat[offset : offset + p.numel()].view_as(p)
            offset += p.numel()
        self._layers = [m for m in module.modules() if _trainable(m)]
        self._calls: list[tuple[nn.Module, Tensor, Tensor, int]] = []
        self._handles = [m.register_forward_hook(self._capture) for m in self._layers]

    # -- hooks --------------------------------------------------------------------------------
    def _capture(self, module: nn.Module, inputs: tuple, output: Tensor) -> None:
        if torch.is_grad_enabled() and output.requires_grad:
            self._calls.append((module, inputs[0].detach(), output, output._version))

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
        self._calls = []

    def assign_grads(self) -> None:
        """Point every trainable ``p.grad`` at its slice of :attr:`flat`."""
        for p in self.params:
            p.grad = self._views[id(p)]

    def zero(self) -> Tensor:
        """The clipped sum of an empty batch (zeros), in :attr:`flat`."""
        self._calls = []
        return self.flat.zero_()

    # -- the clipped sum ----------------------------------------------------------------------
    def clipped_sum(self, loss: Tensor) -> Tensor:
        """sum_i c_i g_i into :attr:`flat` (returned); ``loss`` is the batch mean of the last forward."""
        calls, self._calls = self._calls, []
        if not calls:
            raise RuntimeError("FusedClipper: no forward of a trainable layer was recorded before the loss")
        for m, _, out, version in calls:
            if out._version != version:
                raise RuntimeError(
                    f"FusedClipper: the output of {type(m).__name__} was modified in place after "
                    "the layer; use grad_sample_mode='hooks' or an out-of-place op"
                )
        grads = torch.autograd.grad(loss, [c[2] for c in calls], allow_unused=True, materialize_grads=True)
        n = calls[0][1].shape[0]
        by_layer: dict[int, list[tuple[Tensor, Tensor]]] = {}
        for (m, act, _, _), g in zip(calls, grads, strict=True):
            if act.shape[0] != n:
                raise RuntimeError(f"FusedClipper: {type(m).__name__} saw {act.shape[0]} samples, the batch has {n}")
            by_layer.setdefault(id(m), []).append((act, g))
        missing = [type(m).__name__ for m in self._layers if id(m) not in by_layer]
        if missing:
            raise RuntimeError(f"FusedClipper: trainable layer(s) {', '.join(missing)} took no part in the forward")
        # The loss is a batch mean: per-sample gradients are n x what autograd returns. The factor n
        # is applied to the norms and to the clip factors instead of to every output gradient.
        with torch.inference_mode():  # plain tensor arithmetic from here on: skip autograd's bookkeeping
            return self._clip_and_sum(n, by_layer)

    def _clip_and_sum(self, n: int, by_layer: dict[int, list[tuple[Tensor, Tensor]]]) -> Tensor:
        sq = torch.zeros(n, dtype=self.flat.dtype, device=self.flat.device)
        deferred: list[_Deferred] = []
        for m in self._layers:
            pairs = by_layer[id(m)]
            if type(m) is nn.Linear:
                a = _cat([act.reshape(n, 1, -1, m.in_features) for act, _ in pairs])  # (B, 1, T, in)
                g = _cat([gr.reshape(n, 1, -1, m.out_features) for _, gr in pairs])  # (B, 1, T, out)
                self._matmul_layer(m.weight, m.bias, a, g, sq, deferred)
            elif (type(m) is nn.Conv1d or type(m) is nn.Conv2d) and _conv_route(m, pairs[0][1]) == "unfold":
                a = _cat([_unfold(m, act) for act, _ in pairs])  # (B, G, L, in/G * k)
                g = _cat(
                    [gr.reshape(n, m.groups, m.out_channels // m.groups, -1).transpose(2, 3) for _, gr in pairs]
                )  # (B, G, L, out/G)
                self._matmul_layer(m.weight, m.bias, a, g, sq, deferred)
            elif type(m) is nn.Conv1d or type(m) is nn.Conv2d:  # exact types, as SUPPORTED lists them
                self._conv_materialised(m, pairs, sq, deferred)
            else:
                self._sampled(m, pairs, sq, deferred)
        c = clip_factors(sq * (n * n), self.max_grad_norm) * n
        for item in deferred:
            if item[0] == "mv":  # x: per-sample gradients (B, numel)
                _, view, x, _ = item
                torch.mv(x.t(), c.to(x.dtype), out=view.view(-1))
            elif item[0] == "bk":  # one group: x = A (B*T, I), y = G (B, T, O); (c ⊙ G)ᵀ A
                _, view, x, y = item
                gc = (y * c.to(y.dtype)[:, None, None]).reshape(-1, y.shape[-1])  # (B*T, O)
                torch.mm(gc.t(), x, out=view.view(gc.shape[1], -1))
            else:  # "bk-groups": x = A (B, G, T, I), y = G (B, G, T, O); per group (c ⊙ G_g)ᵀ A_g
                _, view, x, y = item
                b, groups, t, i = x.shape
                gc = (y * c.to(y.dtype)[:, None, None, None]).permute(1, 3, 0, 2).reshape(groups, -1, b * t)
                torch.bmm(gc, x.transpose(0, 1).reshape(groups, b * t, i), out=view.view(groups, -1, i))
        return self.flat

    def _matmul_layer(
        self, weight: Tensor, bias: Tensor | None, a: Tensor, g: Tensor, sq: Tensor, deferred: list[_Deferred]
    ) -> None:
        """A layer whose per-sample gradient is, per group, sum_t g_tᵀ a_t: Linear, and Conv on unfolded input.

        a (B, G, T, I), g (B, G, T, O); the weight is (G * O, I) in memory; the bias (G * O,). Squared
        norms are added to ``sq`` (in place: mixed dtypes promote), the clipped sums are deferred.
        """
        n, groups, t, i = a.shape
        o = g.shape[-1]
        a = a.to(g.dtype)
        vecdot = torch.linalg.vecdot
        if groups == 1 and t == 1:  # ||g aᵀ||² = ||g||² ||a||²; the bias's is ||g||²
            a2, g2 = a.reshape(n, i), g.reshape(n, o)
            gsq = vecdot(g2, g2)
            if weight.requires_grad:
                sq.addcmul_(vecdot(a2, a2), gsq)
                deferred.append(("bk", self._views[id(weight)], a2, g2.unsqueeze(1)))
            if bias is not None and bias.requires_grad:
                sq.add_(gsq)
                deferred.append(("mv", self._views[id(bias)], g2, None))
            return
        if weight.requires_grad:
            view = self._views[id(weight)]
            if t * (i + o) < i * o:  # ghost norm: <A Aᵀ, G Gᵀ> per sample and group (T = 1: ||a||² ||g||²)
                aa = torch.matmul(a, a.transpose(2, 3))  # (B, G, T, T)
                gg = torch.matmul(g, g.transpose(2, 3))  # (B, G, T, T)
                sq.add_(vecdot(aa.reshape(n, -1), gg.reshape(n, -1)))
                if groups == 1:
                    deferred.append(("bk", view, a.reshape(n * t, i), g.reshape(n, t, o)))
                else:
                    deferred.append(("bk-groups", view, a, g))
            else:  # per-sample gradients are the cheaper route
                gs = torch.matmul(g.transpose(2, 3), a).reshape(n, -1)  # (B, G*O*I)
                sq.add_(vecdot(gs, gs))
                deferred.append(("mv", view, gs, None))
        if bias is not None and bias.requires_grad:
            gb = g.sum(2).reshape(n, -1)  # (B, G*O)
            sq.add_(vecdot(gb, gb))
            deferred.append(("mv", self._views[id(bias)], gb, None))

    def _conv_materialised(self, m: nn.Conv1d | nn.Conv2d, pairs, sq: Tensor, deferred: list[_Deferred]) -> None:
        """Per-sample weight gradients of a convolution as the weight gradient of one grouped convolution.

        The batch folds into the channels (1, B*C, *S) with groups = B * groups: the weight gradient
        of that convolution, (B * out, in/groups, *k), holds every sample's own -- one native
        kernel instead of an unfold (im2col) and a batched matmul.
        """
        n = pairs[0][0].shape[0]
        gw, gb = None, None
        for act, g in pairs:
            x = act.to(g.dtype).reshape(1, n * m.in_channels, *act.shape[2:])
            y = g.reshape(1, n * m.out_channels, *g.shape[2:])
            if m.weight.requires_grad:
                w = torch.empty((n * m.out_channels, *m.weight.shape[1:]), dtype=g.dtype, device=g.device)
                _, part, _ = torch.ops.aten.convolution_backward(
                    y,
                    x,
                    w,
                    None,
                    list(m.stride),
                    list(m.padding),
                    list(m.dilation),
                    False,
                    [0] * len(m.stride),
                    n * m.groups,
                    [False, True, False],
                )
                part = part.reshape(n, -1)  # (B, out*in/G*k)
                gw = part if gw is None else gw + part
            if m.bias is not None and m.bias.requires_grad:
                part = g.reshape(n, m.out_channels, -1).sum(2)  # (B, out)
                gb = part if gb is None else gb + part
        for p, gs in ((m.weight, gw), (m.bias, gb)):
            if gs is not None:
                sq.add_(torch.linalg.vecdot(gs, gs))
                deferred.append(("mv", self._views[id(p)], gs, None))

    def _sampled(self, m: nn.Module, pairs, sq: Tensor, deferred: list[_Deferred]) -> None:
        n = pairs[0][0].shape[0]
        total: dict[int, Tensor] = {}
        for act, g in pairs:
            for p, gs in _SAMPLERS[type(m)](m, [act], g).items():  # linear in g: unscaled like the rest
                gs = gs.reshape(n, -1)
                total[id(p)] = total[id(p)] + gs if id(p) in total else gs
        for p in _trainable(m):
            gs = total[id(p)]
            sq.add_(torch.linalg.vecdot(gs, gs))
            deferred.append(("mv", self._views[id(p)], gs, None))


def _cat(parts: list[Tensor]) -> Tensor:
    """Calls of one layer side by side along the T axis (dim 2): their per-sample gradients add up."""
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=2)


def _unfold(m: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """The patches a convolution multiplies by its weight: (B, C, *S) -> (B, groups, L, C/groups * prod(k)).

    Kernel = stride without padding or dilation (patch encoders) is a reshape; otherwise im2col
    (Opacus's ``unfold2d``, which also knows "same" and "valid" padding, on a contiguous copy). Conv1d
    runs as a 1 x k Conv2d.
    """
    k: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: str | tuple[int, ...]
    if type(m) is nn.Conv1d:
        x = x.unsqueeze(2)  # (B, C, 1, W)
        k, stride, dilation = (1, m.kernel_size[0]), (1, m.stride[0]), (1, m.dilation[0])
        padding = m.padding if isinstance(m.padding, str) else (0, m.padding[0])
    else:
        k, stride, dilation, padding = m.kernel_size, m.stride, m.dilation, m.padding
    b, c, h, w = x.shape
    if _pointwise(m):  # 1 x 1 kernel: the patches are the (strided) pixels
        u = x[:, :, :: stride[0], :: stride[1]].reshape(b, m.groups, c // m.groups, -1)  # (B, G, C/G, L)
        return u.transpose(2, 3)
    if k == stride and dilation == (1, 1) and padding in ((0, 0), "valid") and h % k[0] == 0 and w % k[1] == 0:
        u = x.reshape(b, c, h // k[0], k[0], w // k[1], k[1]).permute(0, 2, 4, 1, 3, 5)  # (B, H', W', C, kh, kw)
        return u.reshape(b, -1, m.groups, c // m.groups * k[0] * k[1]).transpose(1, 2)  # (B, G, L, C/G*kh*kw)
    # unfold2d's as_strided assumes a contiguous layout (a transposed input would be read wrongly)
    u = unfold2d(x.contiguous(), kernel_size=k, padding=padding, stride=stride, dilation=dilation)  # (B, C*k, L)
    return u.reshape(b, m.groups, -1, u.shape[-1]).transpose(2, 3)  # (B, G, L, C/G*kh*kw)


def _conv_route(m: nn.Conv1d | nn.Conv2d, out: Tensor) -> str:
    """``unfold`` (ghost norm + book-keeping on the unfolded input) where the ghost identity is the
    cheaper route or the padding is "same"/"valid", else ``grouped`` (:meth:`FusedClipper._conv_materialised`)."""
    if isinstance(m.padding, str) or _pointwise(m):
        return "unfold"
    t = out[0].numel() // m.out_channels  # output positions L
    i = m.in_channels // m.groups * math.prod(m.kernel_size)
    o = m.out_channels // m.groups
    return "unfold" if t * (i + o) < i * o else "grouped"


def _pointwise(m: nn.Conv1d | nn.Conv2d) -> bool:
    """A 1 (x 1) kernel without padding: its unfold is a strided view, no im2col."""
    return all(k == 1 for k in m.kernel_size) and not isinstance(m.padding, str) and not any(m.padding)


def _group_norm_grad_sample(m: nn.GroupNorm, activations: list[Tensor], g: Tensor) -> dict[nn.Parameter, Tensor]:
    """Per-sample GroupNorm gradients: weight sum_s x̂ g, bias sum_s g (Opacus's sampler, one temporary less)."""
    x = activations[0]
    n, c = x.shape[0], m.num_channels
    g = g.reshape(n, c, -1)
    out = {}
    if m.weight is not None and m.weight.requires_grad:
        xhat = F.group_norm(x.to(g.dtype), m.num_groups, eps=m.eps).reshape(n, c, -1)
        out[m.weight] = torch.linalg.vecdot(xhat, g)  # (B, C)
    if m.bias is not None and m.bias.requires_grad:
        out[m.bias] = g.sum(2)  # (B, C)
    return out


_SAMPLERS[nn.GroupNorm] = _group_norm_grad_sample
