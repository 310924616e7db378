"""DPK-GAT: the micro-expression network of FED-PsyAU, top to bottom in one file.

Li et al., "FED-PsyAU: Privacy-Preserving Micro-Expression Recognition via Psychological AU
Coordination and Dynamic Facial Motion Modeling", https://arxiv.org/abs/2507.20557 (ICCV 2025).

Pipeline for one aligned flow image x (B, 3, S, S) — channels u, v, optical strain:

1. Regional stage (local region module). Resize to ``work_size``, cut ``patch``-sized patches at
   the template points of :data:`mer.face.regions.REGIONS`, placed for the data's crop geometry
   ``face_crop`` (``aligned``: this package's crops; ``tight``: the MEGC2019 composite's; a fixed
   index buffer, no parameters: the geometry changes no parameter name or shape), encode
   every patch with a shared small conv net (three kernel = stride convolutions with GroupNorm, so
   the 19 patches stacked into one tall image are encoded independently, p -> p/2 -> p/4 -> 1),
   add a learned position code, mix the patches with one transformer layer, and turn each region
   into its AU nodes with a squeeze-excitation block: 3 + 3 + 2 + 4 = 12 nodes.
2. Hierarchical DPK-GAT: an upper-face graph (6 nodes) and a lower-face graph (6 nodes), each with
   a residual, then a global 12-node graph over the psychologically coordinated upper<->lower
   pairs. Each layer mixes its attention with a prior P (psychological, statistical, both, none).
3. Dual-stream head (DSI): the AU-relationship stream (12 node features through a 1-D Inception
   block) and the global flow stream (x resized to 28x28 through two stride-2 2-D Inception
   blocks, 28 -> 14 -> 7, pooled to 3x3),
   concatenated, one Linear to the emotion classes. Two AU heads give multi-label AU logits
   before (aux) and after the graphs.

Differences from the reference code, on purpose: non-edges are masked with -inf (not 0) before
the softmax; the regional stage reads only the flow image (composite-format input works), so
patches come from the template layout; every weight is in an Opacus-supported layer. Cost was
shaped for DP-SGD: few parameterised modules (Opacus pays per module and per parameter tensor),
small unfolds for the per-sample conv gradients (kernel = stride encoder, dilated 3x3 for the 5x5
field), no max pooling; see benchmarks/model.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mer.face.regions import AU_NODES, FACE_CROPS, LOWER_NODES, REGIONS, UPPER_NODES, patch_boxes
from mer.model.layers import (
    DPKGATLayer,
    Inception1d,
    Inception2d,
    RegionSE,
    TransformerLayer,
    resize_flow,
)
from mer.priors import (
    global_adjacency,
    lower_adjacency,
    restrict_prior,
    statistical_prior,
    uniform_prior,
    upper_adjacency,
)

PRIORS = ("both", "psych", "stat", "none")


@dataclass(frozen=True)
class DPKGATConfig:
    num_classes: int = 3
    work_size: int = 56  # side the flow image is resized to before patches are cut
    patch: int = 8  # patch side at work_size (multiple of 4)
    face_crop: str = "aligned"  # crop geometry of the data (mer.face.regions.FACE_CROPS): aligned | tight
    dim: int = 64  # token / node features; also the GAT hidden size per head
    enc_channels: tuple[int, int] = (16, 32)  # patch encoder conv widths
    tf_heads: int = 4  # transformer heads across patches
    gat_heads: int = 3  # DPK-GAT heads (averaged)
    gat_dropout: float = 0.5  # dropout on attention coefficients
    beta: float = 0.3  # prior weight
    prior: str = "both"  # both | psych | stat | none
    stat_smoothing: float = 1.0  # add-s smoothing of co-occurrence counts
    flow_size: int = 28  # global flow stream input side
    flow_branch: int = 8  # channels per Inception branch, flow stream
    au_branch: int = 16  # channels per Inception branch, AU stream
    dropout: float = 0.5  # before the emotion classifier

    def problems(self) -> list[str]:
        p = []
        if self.num_classes < 2:
            p.append(f"num_classes must be >= 2 (got {self.num_classes})")
        if self.prior not in PRIORS:
            p.append(f"prior must be one of {', '.join(PRIORS)} (got {self.prior!r})")
        if self.patch % 4 or not 4 <= self.patch <= self.work_size:
            p.append(f"patch must be a multiple of 4 and in [4, work_size={self.work_size}] (got {self.patch})")
        if self.face_crop not in FACE_CROPS:
            p.append(f"face_crop must be one of {', '.join(FACE_CROPS)} (got {self.face_crop!r})")
        if self.dim % self.tf_heads:
            p.append(f"dim {self.dim} must be divisible by tf_heads {self.tf_heads}")
        if not 0.0 <= self.beta <= 1.0:
            p.append(f"beta must lie in [0, 1] (got {self.beta})")
        if self.flow_size % 4:
            p.append(f"flow_size must be divisible by 4 (got {self.flow_size})")
        return p


class DPKGAT(nn.Module):
    """The full network. ``forward(x)`` with x (B, 3, S, S) returns
    ``(emotion_logits (B, K), au_logits (B, 12), aux_au_logits (B, 12))``."""

    predicts_aus = True  # has AU heads: the trainer gives them loss weight where AU labels exist

    def __init__(self, config: DPKGATConfig) -> None:
        super().__init__()
        if config.problems():
            raise ValueError("invalid DPKGATConfig: " + "; ".join(config.problems()))
        if tuple(a for r in REGIONS for a in r.aus) != AU_NODES:
            raise ValueError("REGIONS must list the AUs in AU_NODES order")
        self.config = c = config
        d, (c1, c2), n_au = c.dim, c.enc_channels, len(AU_NODES)

        # 1. regional stage
        boxes = patch_boxes(c.work_size, c.patch, c.face_crop)  # (P, 2) as (y0, x0)
        off = np.arange(c.patch)
        rows = boxes[:, 0, None, None] + off[None, :, None]  # (P, p, 1)
        cols = boxes[:, 1, None, None] + off[None, None, :]  # (P, 1, p)
        self.register_buffer("patch_index", torch.as_tensor((rows * c.work_size + cols).reshape(-1)))
        self.n_patches = len(boxes)
        self.region_sizes = [len(r.points) for r in REGIONS]
        # Patches are stacked into one tall image (B, 3, P*p, p); every conv has kernel = stride, so
        # no kernel ever straddles two patches: each patch is encoded on its own, p -> p/2 -> p/4 -> 1.
        self.enc1 = nn.Conv2d(3, c1, 2, stride=2, bias=False)
        self.enc_norm1 = nn.GroupNorm(4, c1)
        self.enc2 = nn.Conv2d(c1, c2, 2, stride=2, bias=False)
        self.enc_norm2 = nn.GroupNorm(4, c2)
        self.enc3 = nn.Conv2d(c2, d, c.patch // 4, stride=c.patch // 4)  # whole (p/4)^2 map -> one token
        self.register_buffer("position_onehot", torch.eye(self.n_patches))
        self.position = nn.Linear(self.n_patches, d, bias=False)  # learned position codes
        self.mixer = TransformerLayer(d, c.tf_heads)
        self.regions = RegionSE(self.region_sizes, [len(r.aus) for r in REGIONS], d)
        self.aux_au_head = nn.Linear(n_au * d, n_au)

        # 2. hierarchical DPK-GAT
        beta = 0.0 if c.prior == "none" else c.beta
        gat = {"heads": c.gat_heads, "hidden": d, "beta": beta, "dropout": c.gat_dropout}
        self.upper = DPKGATLayer(d, torch.as_tensor(upper_adjacency()), **gat)
        self.lower = DPKGATLayer(d, torch.as_tensor(lower_adjacency()), **gat)
        self.coordinated = DPKGATLayer(d, torch.as_tensor(global_adjacency()), **gat)
        self.register_buffer("stat_prior", torch.full((n_au, n_au), 1.0 / n_au))
        self.set_statistical_prior(np.zeros((n_au, n_au), dtype=np.int64))
        self.au_head = nn.Linear(n_au * d, n_au)

        # 3. dual-stream head
        self.au_stream = Inception1d(d, c.au_branch)
        self.flow1 = Inception2d(3, c.flow_branch, stride=2)
        self.flow2 = Inception2d(self.flow1.out_ch, c.flow_branch, stride=2)
        feat = self.au_stream.out_ch * n_au + self.flow2.out_ch * 9
        self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(feat, c.num_classes))

    @property
    def input_size(self) -> int:
        """Side the model works at; inputs of another size are resized on the way in."""
        return self.config.work_size

    # -- priors and schedule ----------------------------------------------------------------
    def set_statistical_prior(self, counts: np.ndarray) -> None:
        """Set the statistical prior from (12, 12) AU co-occurrence counts (see mer.priors.stat)."""
        stat = statistical_prior(np.asarray(counts), self.config.stat_smoothing)
        self.stat_prior.copy_(torch.as_tensor(stat, dtype=self.stat_prior.dtype))
        for layer, nodes in (
            (self.upper, UPPER_NODES),
            (self.lower, LOWER_NODES),
            (self.coordinated, tuple(range(len(AU_NODES)))),
        ):
            adj = layer.adjacency.cpu().numpy()
            psych = uniform_prior(adj)
            stat_g = restrict_prior(stat[np.ix_(nodes, nodes)], adj)
            prior = {"psych": psych, "stat": stat_g, "both": (psych + stat_g) / 2, "none": psych}[self.config.prior]
            layer.set_prior(torch.as_tensor(prior))

    def set_r(self, r: float) -> None:
        """Set the dynamic prior factor r in [0, 1] on every DPK-GAT layer (the trainer's schedule)."""
        if not 0.0 <= r <= 1.0:
            raise ValueError(f"r must lie in [0, 1] (got {r})")
        for layer in (self.upper, self.lower, self.coordinated):
            layer.r.fill_(r)

    # -- forward ----------------------------------------------------------------------------
    def au_nodes(self, x: Tensor) -> Tensor:
        """Regional stage: flow image (B, 3, S, S) -> AU node features (B, 12, D)."""
        b, c = x.shape[0], self.config
        w = resize_flow(x, c.work_size)  # (B, 3, W, W)
        patches = w.flatten(2).index_select(2, self.patch_index)  # (B, 3, P*p*p)
        patches = patches.reshape(b, 3, self.n_patches * c.patch, c.patch)  # (B, 3, P*p, p) patches stacked
        h = F.gelu(self.enc_norm1(self.enc1(patches)))  # (B, c1, P*p/2, p/2)
        h = F.gelu(self.enc_norm2(self.enc2(h)))  # (B, c2, P*p/4, p/4)
        tokens = self.enc3(h).flatten(2).transpose(1, 2)  # (B, P, D)
        tokens = tokens + self.position(self.position_onehot.expand(b, -1, -1))
        tokens = self.mixer(tokens)  # (B, P, D)
        return self.regions(tokens)  # (B, 12, D)

    def relate(self, nodes: Tensor) -> Tensor:
        """Hierarchical graphs: upper and lower face with residuals, then the coordinated graph."""
        up, low = nodes[:, list(UPPER_NODES)], nodes[:, list(LOWER_NODES)]  # (B, 6, D) each
        up = up + F.elu(self.upper(up))
        low = low + F.elu(self.lower(low))
        h = torch.cat([up, low], dim=1)  # (B, 12, D)
        return h + F.elu(self.coordinated(h))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"expected a flow image batch (B, 3, S, S) (got {tuple(x.shape)})")
        b = x.shape[0]
        nodes = self.au_nodes(x)  # (B, 12, D)
        aux_au = self.aux_au_head(nodes.flatten(1))  # (B, 12)
        rel = self.relate(nodes)  # (B, 12, D)
        au = self.au_head(rel.flatten(1))  # (B, 12)
        au_feat = self.au_stream(rel.transpose(1, 2)).flatten(1)  # (B, C_au*12)
        f = self.flow1(resize_flow(x, self.config.flow_size))  # (B, C, 14, 14)
        f = self.flow2(f)  # (B, C, 7, 7)
        f = F.adaptive_avg_pool2d(f, 3).reshape(b, -1)  # (B, C*9)
        logits = self.classifier(torch.cat([au_feat, f], dim=1))  # (B, K)
        return logits, au, aux_au
