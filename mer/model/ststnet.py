"""STSTNet: the shallow triple-stream CNN of the MEGC2019 composite, as a reference baseline.

Liong, Gan, See, Khor, Huang, "Shallow Triple Stream Three-dimensional CNN (STSTNet) for
Micro-expression Recognition", FG 2019 (MEGC), https://arxiv.org/abs/1902.03634. Published on the
composite (442 clips, 3 classes, LOSO): UF1 0.7353, UAR 0.7605.

What was taken from where:

- **Input** (paper, abstract and Sec. III): one 28x28x3 image per clip, the optical strain and
  the horizontal and vertical optical flow between onset and apex, stacked as channels (the
  "three-dimensional" of the name). Here the channels are u, v, strain, as the composite and
  this package store them; the order is immaterial to the network (every stream sees all three).
- **Layers** (paper Fig. 2; the authors' ``STSTNet.mat`` and the PyTorch port that the MEGC
  community shares): three parallel streams, each one 3x3 convolution over the whole 3-channel
  input with 3, 5 and 8 filters, ReLU, normalisation, 3x3 max pooling with stride 3, dropout;
  the 3 + 5 + 8 = 16 maps are concatenated, 2x2 average pooling with stride 2, flattened
  (16 x 5 x 5 = 400 at 28x28) and one fully connected layer to the classes. Padding 1 keeps
  28x28 after the convolution and padding 1 in the max pool gives 10x10 (the port pads the
  convolution by 2, 30x30, which pools to the same 10x10 and 5x5).
- **Training** (paper Sec. IV; the port): Adam, learning rate 5e-5, 500 epochs, batch 256,
  plain cross-entropy, the last epoch's model. These are the model's own defaults in
  :data:`mer.model.registry.TRAIN_DEFAULTS`, used whenever ``--model ststnet`` is given
  without ``--epochs`` / ``--lr`` / ``--batch-size``.

Differences, on purpose: BatchNorm becomes GroupNorm with **one group per stream** (a
per-sample normalisation over the stream's maps, so Opacus computes exact per-sample gradients
and a test sample never leaks into the batch statistics); the published figures picked the
best epoch on the test subject, this package trains a fixed schedule and keeps the last epoch.
No AU heads: ``forward`` returns ``(logits, None, None)`` like flow-cnn.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mer.model.layers import resize_flow

NORMS = ("group", "none")


@dataclass(frozen=True)
class STSTNetConfig:
    num_classes: int = 3
    size: int = 28  # input side the flow image is resized to (the paper's 28)
    streams: tuple[int, int, int] = (3, 5, 8)  # filters per stream (3x3 convolutions)
    norm: str = "group"  # group: GroupNorm, one group per stream | none
    dropout: float = 0.5  # after each stream's max pool (the port's nn.Dropout(0.5))

    def problems(self) -> list[str]:
        p = []
        if self.num_classes < 2:
            p.append(f"num_classes must be >= 2 (got {self.num_classes})")
        if self.size < 6:
            p.append(f"size must be >= 6 (got {self.size})")
        if len(self.streams) != 3 or min(self.streams) < 1:
            p.append(f"streams must be three filter counts >= 1 (got {self.streams})")
        if self.norm not in NORMS:
            p.append(f"norm must be one of {', '.join(NORMS)} (got {self.norm!r})")
        if not 0.0 <= self.dropout < 1.0:
            p.append(f"dropout must lie in [0, 1) (got {self.dropout})")
        return p

    @property
    def pooled_side(self) -> int:
        """Side after max pool 3/3 (padding 1) and average pool 2/2: 5 at 28."""
        return ((self.size - 1) // 3 + 1) // 2


class STSTNet(nn.Module):
    """Three shallow streams. ``forward(x)`` with x (B, 3, S, S) returns ``(logits (B, K), None, None)``.

    Shapes (S = ``size``, m = (S - 1) // 3 + 1, a = m // 2; 28 -> 10 -> 5):
        - input: (B, 3, S', S') for any S' (resized to S on the way in)
        - stream k: (B, c_k, S, S) -> max pool (B, c_k, m, m)
        - concatenated and average-pooled: (B, 16, a, a) -> (B, 16 a^2) -> logits (B, K)
    """

    def __init__(self, config: STSTNetConfig) -> None:
        super().__init__()
        if config.problems():
            raise ValueError("invalid STSTNetConfig: " + "; ".join(config.problems()))
        self.config = c = config
        self.convs = nn.ModuleList(nn.Conv2d(3, k, 3, padding=1) for k in c.streams)
        self.norms = nn.ModuleList(nn.GroupNorm(1, k) if c.norm == "group" else nn.Identity() for k in c.streams)
        self.classifier = nn.Linear(sum(c.streams) * c.pooled_side**2, c.num_classes)

    @property
    def input_size(self) -> int:
        """Side the model works at; inputs of another size are resized on the way in."""
        return self.config.size

    def forward(self, x: Tensor) -> tuple[Tensor, None, None]:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"expected a flow image batch (B, 3, S, S) (got {tuple(x.shape)})")
        x = resize_flow(x, self.config.size)  # (B, 3, S, S)
        maps = []
        for conv, norm in zip(self.convs, self.norms):
            h = norm(F.relu(conv(x)))  # (B, c_k, S, S)
            h = F.max_pool2d(h, 3, stride=3, padding=1)  # (B, c_k, m, m)
            maps.append(F.dropout(h, self.config.dropout, self.training))
        h = F.avg_pool2d(torch.cat(maps, dim=1), 2, stride=2)  # (B, 16, a, a)
        return self.classifier(h.flatten(1)), None, None  # (B, K)
