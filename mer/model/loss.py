"""The training loss of DPK-GAT: 0.2 * CE(emotion) + 0.8 * (BCE(AU) + BCE(aux AU)).

Computed per sample and then averaged over the batch, so each sample's loss depends on that sample
alone. That is what DP-SGD needs (Opacus assumes ``loss_reduction="mean"`` over the batch): a
sample without AU coding (SMIC) simply has no AU terms, and a batch where no sample has AUs gives a
plain weighted CE, never a division by zero.

The weights themselves should follow how much AU coding the training data has:
:func:`loss_weights_for` moves the AU weight to the emotion term in proportion to the share of
training samples without AU labels, so data with no AU labels at all (the MEGC2019 composite,
SMIC) trains on the emotion cross-entropy with weight 1, not 0.2.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class LossWeights:
    emotion: float = 0.2  # weight of the emotion cross-entropy
    au: float = 0.8  # weight of each AU BCE term (main and auxiliary head); 0 disables them


def loss_weights_for(au_known_share: float, base: LossWeights = LossWeights()) -> LossWeights:
    r"""The loss weights for training data of which a share ``s`` of the samples has AU labels.

    .. math::
        w_{emo}(s) = e_0 + (1 - s)\,a_0, \qquad w_{au}(s) = s\,a_0

    with :math:`(e_0, a_0)` = ``base`` (default 0.2, 0.8: :math:`w_{emo} = 1 - 0.8 s`,
    :math:`w_{au} = 0.8 s`). At ``s = 1`` this is ``base``; at ``s = 0`` the loss is the
    emotion cross-entropy alone with weight :math:`e_0 + a_0` (1 by default) and the AU heads get
    no loss. Why this choice: the total weight :math:`w_{emo} + w_{au}` stays
    :math:`e_0 + a_0` whatever ``s`` is, so the gradient scale of the emotion task does not drop
    five-fold when AU labels are missing (that matters for DP-SGD, whose clipping norm and noise
    are absolute, and for plain SGD; Adam alone is nearly scale-free); and the AU weight shrinks
    with the evidence behind it. Per sample, an unlabelled sample's AU terms stay masked to 0 by
    :func:`per_sample_loss`, so the AU part of a batch's mean loss is
    :math:`\approx s \cdot w_{au}(s) = a_0 s^2`: AU supervision from a small labelled minority
    cannot dominate the emotion task.

    Pure function; the federated workload calls it with its local (or securely summed) share.
    Raises ValueError when ``s`` is outside [0, 1] or a base weight is negative.
    """
    s = float(au_known_share)
    if not 0.0 <= s <= 1.0:
        raise ValueError(f"au_known_share must lie in [0, 1] (got {au_known_share})")
    if base.emotion < 0 or base.au < 0:
        raise ValueError(f"loss weights must be >= 0 (got emotion {base.emotion}, au {base.au})")
    return LossWeights(emotion=base.emotion + (1.0 - s) * base.au, au=s * base.au)


def per_sample_loss(
    outputs: tuple,
    label: Tensor,
    au: Tensor,
    au_known: Tensor,
    weights: LossWeights = LossWeights(),
    class_weight: Tensor | None = None,
) -> Tensor:
    """Loss of every sample, shape (B,).

    Args:
        outputs: the model's ``(emotion_logits (B, K), au_logits (B, 12) | None, aux_au_logits | None)``.
        label: (B,) int64 class indices.
        au: (B, 12) float multi-hot AU labels.
        au_known: (B,) bool, False where the sample has no AU coding (its AU terms are 0).
        weights: emotion and AU weights (see :func:`loss_weights_for`).
        class_weight: optional (K,) per-class weights of the CE (class-balanced loss).

    The AU terms of a model with AU heads are always computed, multiplied by their weight and
    mask: with ``weights.au == 0`` (or no sample labelled) the loss equals the weighted CE
    exactly and the AU heads get gradients that are exactly zero, not missing (Opacus expects a
    per-sample gradient for every trainable parameter).
    """
    logits, au_logits, aux_logits = outputs
    loss = weights.emotion * F.cross_entropy(logits, label, reduction="none")
    if class_weight is not None:
        loss = loss * class_weight[label]
    mask = au_known.to(logits.dtype)
    for head in (au_logits, aux_logits):
        if head is not None:
            bce = F.binary_cross_entropy_with_logits(head, au.to(head.dtype), reduction="none").mean(dim=1)
            loss = loss + weights.au * mask * bce
    return loss


def mer_loss(
    outputs: tuple,
    label: Tensor,
    au: Tensor,
    au_known: Tensor,
    weights: LossWeights = LossWeights(),
    class_weight: Tensor | None = None,
) -> Tensor:
    """Batch mean of :func:`per_sample_loss` (a scalar)."""
    return per_sample_loss(outputs, label, au, au_known, weights, class_weight).mean()


def balanced_class_weight(label, num_classes: int) -> torch.Tensor:
    """Inverse-frequency class weights, scaled so the average weight over the samples is 1.

    A class absent from ``label`` gets weight 0 (it contributes no samples anyway).
    """
    counts = torch.bincount(torch.as_tensor(label), minlength=num_classes).double()
    w = torch.where(counts > 0, 1.0 / counts.clamp(min=1), torch.zeros_like(counts))
    return (w * len(label) / (w * counts).sum()).float()
