"""Segmentation losses: cross-entropy (or focal) plus soft Dice, `ce_weight * CE + dice_weight * Dice`.

logits are (B, C, H, W): C > 1 is a softmax head over C classes, C == 1 a sigmoid head for
"class 1 versus everything else" (binary data). target is (B, H, W) int64 class indices with
`ignore_index` where a pixel is not trained on. Written here rather than taken from
segmentation-models-pytorch because its losses do not share one ignore/weight convention across
CE, focal and Dice, and the combination with a sigmoid head is three lines either way.
"""

import torch
import torch.nn.functional as F

from ..data.segmentation import IGNORE_INDEX

DICE_SMOOTH = 1.0  # keeps Dice defined (and its gradient finite) for classes with few pixels


def segmentation_loss(logits: torch.Tensor, target: torch.Tensor, ce_weight: float = 1.0, dice_weight: float = 1.0,
                      focal_gamma: float = 0.0, class_weights: torch.Tensor | None = None,
                      ignore_index: int = IGNORE_INDEX) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """(total loss, {"ce" or "focal": ..., "dice": ...}) for a batch."""
    logits = logits.float()  # the sums below lose precision in half precision
    valid = target != ignore_index  # (B, H, W)
    if logits.shape[1] == 1:
        probs, onehot, per_pixel = _binary(logits, target, focal_gamma)
    else:
        probs, onehot, per_pixel = _multiclass(logits, target, valid, focal_gamma)
    weight = pixel_weights(target, valid, class_weights, logits)  # (B, H, W)
    pixel_loss = (per_pixel * weight)[valid].sum() / weight[valid].sum().clamp(min=1e-12)  # as F.cross_entropy
    parts = {"focal" if focal_gamma > 0 else "ce": pixel_loss}
    total = ce_weight * pixel_loss
    if dice_weight:
        parts["dice"] = soft_dice_loss(probs, onehot, valid)
        total = total + dice_weight * parts["dice"]
    return total, parts


def pixel_weights(target, valid, class_weights, logits) -> torch.Tensor:
    """(B, H, W) weight of each pixel: its true class's weight (a sigmoid head's classes are 0 and 1), or 1."""
    if class_weights is None:
        return torch.ones_like(target, dtype=logits.dtype)
    classes = target.masked_fill(~valid, 0).clamp(max=len(class_weights) - 1)
    return class_weights.to(logits.device, logits.dtype)[classes]


def _multiclass(logits, target, valid, gamma):
    """softmax probs (B, C, H, W), one-hot target (B, C, H, W), per-pixel CE or focal (B, H, W)."""
    safe = target.masked_fill(~valid, 0)
    log_probs = logits.log_softmax(1)
    picked = log_probs.gather(1, safe[:, None])[:, 0]  # (B, H, W) log p of the true class
    per_pixel = -picked
    if gamma > 0:
        per_pixel = per_pixel * (1 - picked.exp()) ** gamma
    onehot = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
    return log_probs.exp(), onehot, per_pixel


def _binary(logits, target, gamma):
    """The sigmoid head: probability of class 1, as (B, 1, H, W) with its target and per-pixel BCE or focal."""
    positive = (target == 1).to(logits.dtype)[:, None]  # (B, 1, H, W)
    per_pixel = F.binary_cross_entropy_with_logits(logits, positive, reduction="none")
    probs = logits.sigmoid()
    if gamma > 0:
        p_true = probs * positive + (1 - probs) * (1 - positive)
        per_pixel = per_pixel * (1 - p_true) ** gamma
    return probs, positive, per_pixel[:, 0]


def soft_dice_loss(probs: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of 2|P.T| / (|P| + |T|), summed over the batch's valid pixels.

    Only classes present in the batch's targets count: an absent class has no overlap to reward,
    and its smoothed score would punish a handful of stray pixels as hard as missing a whole object
    (cross-entropy already handles false positives). A sigmoid head's one channel always counts.
    """
    mask = valid[:, None].to(probs.dtype)
    probs, onehot = probs * mask, onehot * mask
    dims = (0, 2, 3)
    intersection, cardinality = (probs * onehot).sum(dims), (probs + onehot).sum(dims)
    dice = (2 * intersection + DICE_SMOOTH) / (cardinality + DICE_SMOOTH)  # (C,)
    present = onehot.sum(dims) > 0 if probs.shape[1] > 1 else torch.ones_like(dice, dtype=torch.bool)
    if not present.any():
        return (1 - dice).mean() * 0
    return (1 - dice[present]).mean()


def balanced_class_weights(pixel_counts: torch.Tensor) -> torch.Tensor:
    """total / (C * count_c) per class, as scikit-learn's class_weight="balanced" (0 for absent classes)."""
    counts = pixel_counts.double()
    weights = counts.sum() / (len(counts) * counts.clamp(min=1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights)).float()
