"""flow-cnn: the reference model, a small three-stream CNN on the 28x28 flow image.

The kind of baseline the MER literature compares against: OFF-ApexNet (Gan et al. 2019, one
stream per flow component) and STSTNet (Liong et al. 2019, shallow three-stream net on u, v and
optical strain at 28x28). One stream per input channel (u, v, strain); the three streams run as
grouped convolutions (groups = 3, so stream k only ever sees channel k) with one GroupNorm group
per stream, then the flattened maps of all streams go through one Linear to the classes.
No AU heads: ``forward`` returns ``(logits, None, None)`` to match DPK-GAT's output convention.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor, nn

from mer.model.layers import resize_flow


@dataclass(frozen=True)
class FlowCNNConfig:
    num_classes: int = 3
    size: int = 28  # input side the flow image is resized to
    channels: tuple[int, int] = (8, 16)  # conv widths per stream, layer 1 and 2
    dropout: float = 0.5  # before the classifier

    def problems(self) -> list[str]:
        p = []
        if self.num_classes < 2:
            p.append(f"num_classes must be >= 2 (got {self.num_classes})")
        if self.size % 4:
            p.append(f"size must be divisible by 4 (got {self.size})")
        return p


class FlowCNN(nn.Module):
    """Three-stream CNN. ``forward(x)`` with x (B, 3, S, S) returns ``(logits (B, K), None, None)``."""

    def __init__(self, config: FlowCNNConfig) -> None:
        super().__init__()
        if config.problems():
            raise ValueError("invalid FlowCNNConfig: " + "; ".join(config.problems()))
        self.config = c = config
        c1, c2 = c.channels
        self.conv1 = nn.Conv2d(3, 3 * c1, 3, padding=1, groups=3)
        self.norm1 = nn.GroupNorm(3, 3 * c1)
        self.conv2 = nn.Conv2d(3 * c1, 3 * c2, 3, padding=1, groups=3)
        self.norm2 = nn.GroupNorm(3, 3 * c2)
        self.classifier = nn.Sequential(nn.Dropout(c.dropout), nn.Linear(3 * c2 * (c.size // 4) ** 2, c.num_classes))

    @property
    def input_size(self) -> int:
        """Side the model works at; inputs of another size are resized on the way in."""
        return self.config.size

    def forward(self, x: Tensor) -> tuple[Tensor, None, None]:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != x.shape[3]:
            raise ValueError(f"expected a flow image batch (B, 3, S, S) (got {tuple(x.shape)})")
        x = resize_flow(x, self.config.size)  # (B, 3, 28, 28)
        h = F.max_pool2d(F.relu(self.norm1(self.conv1(x))), 2)  # (B, 3*c1, S/2, S/2)
        h = F.max_pool2d(F.relu(self.norm2(self.conv2(h))), 2)  # (B, 3*c2, S/4, S/4)
        return self.classifier(h.flatten(1)), None, None  # (B, K)
