"""The training loss of DPK-GAT: 0.2 * CE(emotion) + 0.8 * (BCE(AU) + BCE(aux AU)).

Computed per sample and then averaged over the batch, so each sample's loss depends on that sample
alone. That is what DP-SGD needs (Opacus assumes ``loss_reduction="mean"`` over the batch): a
sample without AU coding (SMIC) simply has no AU terms, and a batch where no sample has AUs gives a
plain weighted CE, never a division by zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    emotion: float = 0.2   # weight of the emotion cross-entropy
    au: float = 0.8        # weight of each AU BCE term (main and auxiliary head); 0 disables them


def per_sample_loss(outputs: tuple, label: Tensor, au: Tensor, au_known: Tensor,
                    weights: LossWeights = LossWeights(), class_weight: Tensor | None = None) -> Tensor:
    """Loss of every sample, shape (B,).

    Args:
        outputs: the model's ``(emotion_logits (B, K), au_logits (B, 12) | None, aux_au_logits | None)``.
        label: (B,) int64 class indices.
        au: (B, 12) float multi-hot AU labels.
        au_known: (B,) bool, False where the sample has no AU coding (its AU terms are 0).
        weights: emotion and AU weights.
        class_weight: optional (K,) per-class weights of the CE (class-balanced loss).
    """
    logits, au_logits, aux_logits = outputs
    loss = weights.emotion * F.cross_entropy(logits, label, reduction="none")
    if class_weight is not None:
        loss = loss * class_weight[label]
    if weights.au:
        mask = au_known.to(logits.dtype)
        for head in (au_logits, aux_logits):
            if head is not None:
                bce = F.binary_cross_entropy_with_logits(head, au.to(head.dtype), reduction="none").mean(dim=1)
                loss = loss + weights.au * mask * bce
    return loss


def mer_loss(outputs: tuple, label: Tensor, au: Tensor, au_known: Tensor,
             weights: LossWeights = LossWeights(), class_weight: Tensor | None = None) -> Tensor:
    """Batch mean of :func:`per_sample_loss` (a scalar)."""
    return per_sample_loss(outputs, label, au, au_known, weights, class_weight).mean()


def balanced_class_weight(label, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, scaled so the average weight over the samples is 1.

    A class absent from ``label`` gets weight 0 (it contributes no samples anyway).
    """
    counts = torch.bincount(torch.as_tensor(label), minlength=num_classes).double()
    w = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (w * len(label) / (w * counts).sum()).float()
