"""Building blocks of DPK-GAT, each Opacus-friendly by construction.

Every trainable weight lives in ``nn.Linear``, ``nn.Conv1d/2d/3d``, ``nn.GroupNorm`` or
``nn.LayerNorm``; every ``forward`` takes one tensor whose first axis is the sample axis; fixed
graphs and priors are plain buffers. That is what Opacus needs to compute exact per-sample
gradients with its hooks (no BatchNorm, no raw ``nn.Parameter``, no ``forward(x, adj)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def resize_flow(x: Tensor, size: int) -> Tensor:
    """Resize a flow image batch (B, 3, S, S) to (B, 3, size, size): bilinear, antialiased when shrinking.

    A no-op when S == size. Models call it on their input; the trainer calls it once on the whole
    data set with the model's ``input_size`` so that each step skips the work.
    """
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)


class DPKGATLayer(nn.Module):
    r"""Dynamic-prior-knowledge graph attention (DPK-GAT) over a fixed dense graph.

    From "FED-PsyAU: Privacy-Preserving Micro-Expression Recognition via Psychological AU
    Coordination and Dynamic Facial Motion Modeling" (https://arxiv.org/abs/2507.20557), built
    on GAT (https://arxiv.org/abs/1710.10903). For every head:

    .. math::
        e_{ij} = \mathrm{LeakyReLU}\left(\mathbf{a}_1^\top \mathbf{W}\mathbf{h}_i
                 + \mathbf{a}_2^\top \mathbf{W}\mathbf{h}_j\right)
                 \quad (e_{ij} = -\infty \text{ where } A_{ij} = 0)

        \alpha'_{ij} = \frac{(1 - \beta r)\,\mathrm{softmax}_j(e_{ij}) + \beta r P_{ij}}
                       {\sum_k (1 - \beta r)\,\mathrm{softmax}_k(e_{ik}) + \beta r P_{ik}}

        \mathbf{h}'_i = \sum_j \alpha'_{ij} \mathbf{W}\mathbf{h}_j

    where :math:`A` is the graph (self-loops included), :math:`P` the prior attention (rows sum to
    1 on :math:`A`'s edges), :math:`\beta` the prior weight and :math:`r` the dynamic factor that
    the trainer decays from 1 to 0 ("dynamic prior knowledge"). Heads are concatenated or
    averaged. Since :math:`\mathbf{a}^\top \mathbf{W}\mathbf{h} = (\mathbf{W}^\top\mathbf{a})^\top
    \mathbf{h}`, the two attention scores per head are extra output rows of the same
    ``nn.Linear`` as :math:`\mathbf{W}` (one fused projection, one Opacus hook).

    Args:
        in_dim (int): input node features F.
        adjacency (Tensor): (N, N) bool, ``adjacency[i, j]`` = node i attends to node j.
        heads (int, optional): attention heads H. (default: 3)
        hidden (int, optional): features per head C. (default: 64)
        concat (bool, optional): concatenate heads (H*C out) instead of averaging (C out).
            (default: False)
        beta (float, optional): prior weight; 0 disables the prior. (default: 0.3)
        dropout (float, optional): dropout on the attention coefficients. (default: 0.5)
        negative_slope (float, optional): LeakyReLU slope. (default: 0.2)

    Buffers: ``adjacency`` (N, N) bool, ``prior`` (N, N) float (set with :meth:`set_prior`),
    ``r`` scalar (set by the trainer).

    Shapes:
        - input: (B, N, F)
        - output: (B, N, H*C) if ``concat`` else (B, N, C)
    """

    def __init__(
        self,
        in_dim: int,
        adjacency: Tensor,
        heads: int = 3,
        hidden: int = 64,
        concat: bool = False,
        beta: float = 0.3,
        dropout: float = 0.5,
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        adjacency = torch.as_tensor(adjacency, dtype=torch.bool)
        n = adjacency.shape[0]
        if adjacency.shape != (n, n) or not adjacency.any(dim=1).all():
            raise ValueError(f"adjacency must be (N, N) bool with an edge in every row (got {tuple(adjacency.shape)})")
        if not 0.0 <= beta <= 1.0:
            raise ValueError(f"beta must lie in [0, 1] (got {beta})")
        self.heads, self.hidden, self.concat = heads, hidden, concat
        self.beta, self.negative_slope = beta, negative_slope
        self.proj = nn.Linear(in_dim, heads * hidden + 2 * heads)  # [W | a1ᵀW | a2ᵀW]
        self.dropout = nn.Dropout(dropout)
        self.register_buffer("adjacency", adjacency)
        self.register_buffer("prior", adjacency / adjacency.sum(dim=1, keepdim=True))
        self.register_buffer("r", torch.tensor(1.0))

    @property
    def out_dim(self) -> int:
        return self.heads * self.hidden if self.concat else self.hidden

    def set_prior(self, prior: Tensor) -> None:
        """Replace P; it must be non-negative, zero off the edges, rows summing to 1."""
        prior = torch.as_tensor(prior, dtype=self.prior.dtype, device=self.prior.device)
        if prior.shape != self.prior.shape:
            raise ValueError(f"prior must be {tuple(self.prior.shape)} (got {tuple(prior.shape)})")
        if (prior < 0).any() or (prior[~self.adjacency] != 0).any():
            raise ValueError("prior must be non-negative and zero where the graph has no edge")
        if not torch.allclose(prior.sum(dim=1), torch.ones_like(prior[:, 0]), atol=1e-5):
            raise ValueError("prior rows must sum to 1")
        self.prior.copy_(prior)

    def attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mixed attention alpha' (B, H, N, N) before dropout, and the projected values (B, N, H, C)."""
        b, n, _ = x.shape
        h, c = self.heads, self.hidden
        out = self.proj(x)  # (B, N, H*C + 2H)
        wh = out[..., : h * c].reshape(b, n, h, c)  # (B, N, H, C)
        s_dst = out[..., h * c : h * c + h].transpose(1, 2)  # (B, H, N)  a1·Wh_i
        s_src = out[..., h * c + h :].transpose(1, 2)  # (B, H, N)  a2·Wh_j
        e = F.leaky_relu(s_dst.unsqueeze(-1) + s_src.unsqueeze(-2), self.negative_slope)  # (B, H, N, N)
        e = e.masked_fill(~self.adjacency, float("-inf"))
        alpha = torch.softmax(e, dim=-1)  # (B, H, N, N)
        w = self.beta * self.r
        alpha = (1 - w) * alpha + w * self.prior  # prior (N, N) broadcasts over B, H
        alpha = alpha / alpha.sum(dim=-1, keepdim=True)
        return alpha, wh

    def forward(self, x: Tensor) -> Tensor:
        b, n, _ = x.shape
        alpha, wh = self.attention(x)
        out = torch.einsum("bhij,bjhc->bihc", self.dropout(alpha), wh)  # (B, N, H, C)
        return out.reshape(b, n, -1) if self.concat else out.mean(dim=2)  # (B, N, H*C) | (B, N, C)


class TransformerLayer(nn.Module):
    """Pre-norm transformer encoder layer; attention written with ``nn.Linear`` (no nn.MultiheadAttention).

    Shapes: input and output (B, T, D).
    """

    def __init__(self, dim: int, heads: int = 4, mlp_ratio: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        # No affine in the norms: the Linear right after each absorbs a scale and a shift exactly.
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False)
        self.mlp1 = nn.Linear(dim, mlp_ratio * dim)
        self.mlp2 = nn.Linear(mlp_ratio * dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        b, t, d = x.shape
        q, k, v = (
            self.qkv(self.norm1(x)).reshape(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        )  # 3x (B, h, T, d/h)
        att = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // self.heads), dim=-1)  # (B, h, T, T)
        y = (self.dropout(att) @ v).transpose(1, 2).reshape(b, t, d)  # (B, T, D)
        x = x + self.out(y)
        return x + self.mlp2(self.dropout(F.gelu(self.mlp1(self.norm2(x)))))


class RegionSE(nn.Module):
    """Squeeze-excitation per AU region, then each region's patch tokens mixed into its AU nodes.

    For region r with tokens X_r (n_r patches): squeeze z_r = mean of X_r over its patches; excite
    g_r = sigmoid(W2_r relu(W1_r z_r)), a gate per channel; then a Linear over the patch axis
    turns the gated n_r tokens into the region's m_r AU nodes. The excitation MLPs of all regions
    run as grouped 1x1 convolutions (groups = regions): R independent MLPs in two layers, which
    keeps Opacus at two hooks instead of 2R.

    Args:
        patches (sequence of int): patches per region n_r, in token order.
        nodes (sequence of int): AU nodes per region m_r.
        dim (int): token features D.
        reduction (int, optional): hidden size of the excitation MLP is D // reduction. (default: 4)

    Shapes: input (B, sum n_r, D) -> output (B, sum m_r, D).
    """

    def __init__(self, patches, nodes, dim: int, reduction: int = 4) -> None:
        super().__init__()
        if len(patches) != len(nodes):
            raise ValueError(f"patches ({len(patches)}) and nodes ({len(nodes)}) must list the same regions")
        self.patches, r, hid = list(patches), len(patches), max(1, dim // reduction)
        self.excite1 = nn.Conv1d(r * dim, r * hid, 1, groups=r)
        self.excite2 = nn.Conv1d(r * hid, r * dim, 1, groups=r)
        self.to_nodes = nn.ModuleList(nn.Linear(n, m, bias=False) for n, m in zip(patches, nodes))

    def forward(self, x: Tensor) -> Tensor:
        b, _, d = x.shape
        parts = x.split(self.patches, dim=1)  # R x (B, n_r, D)
        z = torch.cat([t.mean(dim=1) for t in parts], dim=1).unsqueeze(-1)  # (B, R*D, 1)
        gate = torch.sigmoid(self.excite2(F.relu(self.excite1(z))))  # (B, R*D, 1)
        gate = gate.reshape(b, len(parts), 1, d)  # (B, R, 1, D)
        nodes = [
            mix((t * gate[:, i]).transpose(1, 2)).transpose(1, 2)  # (B, m_r, D)
            for i, (mix, t) in enumerate(zip(self.to_nodes, parts))
        ]
        return torch.cat(nodes, dim=1)  # (B, sum m_r, D)


class Inception2d(nn.Module):
    """Inception block: parallel 1x1, 3x3 and 5x5-field convolutions (same stride), concatenated, GroupNorm, ReLU.

    The 5x5 field is a 3x3 kernel with dilation 2 (9 taps instead of 25: the per-sample
    gradients Opacus computes from unfolded inputs are 2.8x smaller). The classic block's
    max-pool branch is left out: on CPU it costs more than the three convs together and adds
    nothing the 1x1 branch cannot carry. ``stride`` 2 halves the map.

    Shapes: input (B, C_in, H, W) -> output (B, 3*branch, H/stride, W/stride).
    """

    def __init__(self, in_ch: int, branch: int, stride: int = 1, groups: int = 3) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(in_ch, branch, 1, stride=stride, bias=False)  # GroupNorm supplies the shift
        self.b3 = nn.Conv2d(in_ch, branch, 3, stride=stride, padding=1, bias=False)
        self.b5 = nn.Conv2d(in_ch, branch, 3, stride=stride, padding=2, dilation=2, bias=False)
        self.norm = nn.GroupNorm(groups, 3 * branch)
        self.out_ch = 3 * branch

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.norm(torch.cat([self.b1(x), self.b3(x), self.b5(x)], dim=1)))  # (B, 3*branch, H', W')


class Inception1d(nn.Module):
    """1-D Inception block over the AU-node axis: kernel 1 and kernel 3 convolutions plus the input itself.

    Shapes: input (B, C_in, N) -> output (B, 2*branch + C_in, N).
    """

    def __init__(self, in_ch: int, branch: int, groups: int = 2) -> None:
        super().__init__()
        self.b1 = nn.Conv1d(in_ch, branch, 1, bias=False)
        self.b3 = nn.Conv1d(in_ch, branch, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(groups, 2 * branch)
        self.out_ch = 2 * branch + in_ch

    def forward(self, x: Tensor) -> Tensor:
        conv = F.relu(self.norm(torch.cat([self.b1(x), self.b3(x)], dim=1)))  # (B, 2*branch, N)
        return torch.cat([conv, x], dim=1)  # (B, 2*branch + C_in, N)
