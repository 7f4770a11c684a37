"""Training targets and loss of the one-stage detector in yolo.py: task-aligned assignment (TOOD).

Assignment decides, per image, which anchor points (cell centres) learn which ground truth. It
is dynamic: it looks at what the network currently predicts, so anchors that already classify
and localise an object well are the ones asked to do it, and the set follows the network as it
learns instead of being fixed by hand-tuned scale ranges. For every ground truth:

1. candidates are the anchor points whose centre lies inside its box, on any level (a box
   thinner than 8 pixels may hold none, and is then never learned);
2. each is scored by the alignment metric  t = score^alpha * IoU^beta, with `score` the
   predicted probability of the ground truth's class and IoU that of the predicted box;
3. the `topk` best candidates become its positives;
4. an anchor claimed by several ground truths keeps the one its predicted box overlaps most.

The class target of a positive is soft: t rescaled so that each ground truth's best positive
gets that ground truth's best IoU. Scores thus learn to mean "an object of this class, boxed
this well", which is what NMS and AP want to rank by, and no separate objectness is needed.

Loss = box_gain * CIoU + cls_gain * BCE + dfl_gain * DFL: BCE over every anchor and class
against the soft targets, CIoU and distribution focal loss over the positives weighted by their
target score; all three are divided by the sum of target scores, so a batch with a few
well-localised objects and one with many poorly localised ones weigh alike.

An end2end model's one-to-one head trains with the same loss at topk=1 (one_to_one): each object's
single best anchor by the same metric (YOLOv10's consistent matching), so the anchor the one-to-many head
ranks first is the one the one-to-one head learns to keep, and its neighbours learn to score low.
"""

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from ...ops.boxes import aligned_iou, box_iou


class Assignment(NamedTuple):
    foreground: torch.Tensor  # (B, A) bool: the anchor learns an object
    boxes: torch.Tensor  # (B, A, 4) xyxy pixels of its ground truth (meaningless where not foreground)
    labels: torch.Tensor  # (B, A) int64 class of its ground truth (idem)
    scores: torch.Tensor  # (B, A, C) soft class targets, zero everywhere but the positives' class
    owners: torch.Tensor  # (B, A) int64 index of its ground truth in the image's targets (idem)


def pad_targets(targets: list[dict], device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Stack per-image targets into (B, M, 4) boxes, (B, M) labels and a (B, M) bool validity mask.

    M is the largest object count in the batch (at least 1, so shapes never collapse); the padding
    rows are zero boxes with mask False.
    """
    most = max([len(t["labels"]) for t in targets] + [1])
    boxes = torch.zeros(len(targets), most, 4, device=device)
    labels = torch.zeros(len(targets), most, dtype=torch.int64, device=device)
    mask = torch.zeros(len(targets), most, dtype=torch.bool, device=device)
    for i, target in enumerate(targets):
        count = len(target["labels"])
        boxes[i, :count] = target["boxes"].to(device, torch.float32)
        labels[i, :count] = target["labels"].to(device)
        mask[i, :count] = True
    return boxes, labels, mask


@torch.no_grad()
def assign_targets(pred_scores, pred_boxes, anchor_points, gt_boxes, gt_labels, gt_mask,
                   topk: int = 10, alpha: float = 0.5, beta: float = 6.0, eps: float = 1e-9) -> Assignment:
    """Task-aligned assignment of ground truths to anchor points, for a batch at once.

    pred_scores (B, A, C) probabilities; pred_boxes (B, A, 4) xyxy pixels; anchor_points (A, 2)
    x, y pixels; gt_boxes (B, M, 4) xyxy pixels, gt_labels (B, M) int64, gt_mask (B, M) bool
    (False for padding). Steps and the meaning of the soft scores: see the module docstring.
    """
    batch, anchors, classes = pred_scores.shape
    # Anchor centres strictly inside each box: (B, M, A).
    x, y = anchor_points[:, 0], anchor_points[:, 1]
    x1, y1, x2, y2 = (gt_boxes[..., i, None] for i in range(4))  # each (B, M, 1)
    margin = torch.stack([x - x1, y - y1, x2 - x, y2 - y], -1).amin(-1)  # (B, M, A)
    inside = (margin > eps) & gt_mask[..., None]

    # IoU of every ground truth with every predicted box, and the score of its class at each anchor.
    iou = torch.stack([box_iou(g, p) for g, p in zip(gt_boxes, pred_boxes)]) * inside  # (B, M, A)
    class_index = gt_labels[:, None, :].expand(batch, anchors, -1)  # (B, A, M)
    score = pred_scores.gather(2, class_index).transpose(1, 2)  # (B, M, A)
    alignment = score.pow(alpha) * iou.pow(beta)  # 0 outside the box, where iou is 0

    # The top-k per ground truth. Anchors outside rank below any inside (-1), so a box whose inside
    # anchors all align at 0 (early training) still gets k of them.
    best = alignment.masked_fill(~inside, -1).topk(min(topk, anchors), dim=-1).indices  # (B, M, k)
    positive = torch.zeros_like(inside).scatter_(-1, best, True) & inside  # (B, M, A)

    # One ground truth per anchor: the one whose box the prediction overlaps most.
    owner = iou.masked_fill(~positive, -1).argmax(1)  # (B, A)
    foreground = positive.any(1)  # (B, A)
    positive &= torch.arange(gt_boxes.shape[1], device=owner.device)[None, :, None] == owner[:, None, :]

    # Soft targets: alignment rescaled per ground truth so its best positive gets its best IoU.
    alignment = alignment * positive
    best_iou = (iou * positive).amax(-1, keepdim=True)  # (B, M, 1)
    best_alignment = alignment.amax(-1, keepdim=True)
    quality = (alignment * best_iou / (best_alignment + eps)).amax(1)  # (B, A)
    labels = gt_labels.gather(1, owner)  # (B, A)
    boxes = gt_boxes.gather(1, owner[..., None].expand(-1, -1, 4))  # (B, A, 4)
    scores = F.one_hot(labels, classes).float() * (quality * foreground)[..., None]  # (B, A, C)
    return Assignment(foreground, boxes, labels, scores, owner)


def distribution_focal_loss(logits: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    """(P, 4, R) logits over bins 0..R-1 and (P, 4) true distances in bins -> (P,) loss.

    A real distance d between bins i and i+1 is the mix (i+1-d) of bin i and (d-i) of bin i+1:
    cross-entropy against that two-hot target pushes the predicted distribution's mass, and so
    its expectation, onto d while keeping it sharp.
    """
    bins = logits.shape[-1]
    distances = distances.clamp(0, bins - 1 - 0.01)  # keep i+1 a valid bin
    left = distances.long()
    right_weight = distances - left
    flat = logits.reshape(-1, bins)
    left_loss = F.cross_entropy(flat, left.reshape(-1), reduction="none").view_as(distances)
    right_loss = F.cross_entropy(flat, (left + 1).reshape(-1), reduction="none").view_as(distances)
    return ((1 - right_weight) * left_loss + right_weight * right_loss).mean(-1)


@dataclass
class YOLOLoss:
    """The detector's training objective; its hyper-parameters are the fields (see module docstring).

    topk, alpha, beta: TOOD's assignment (alpha 0.5 as in YOLOv8: scores are weak early in training
    from scratch, so they should not veto a well-placed box). The gains balance the three terms.
    """

    topk: int = 10
    alpha: float = 0.5
    beta: float = 6.0
    box_gain: float = 7.5
    cls_gain: float = 0.5
    dfl_gain: float = 1.5

    def one_to_one(self) -> "YOLOLoss":
        """The same loss with one positive per object: an end2end model's one-to-one head's."""
        return replace(self, topk=1)

    def __call__(self, cls_logits, box_logits, pred_boxes, anchor_points, strides, targets) -> dict:
        """cls_logits (B, A, C); box_logits (B, A, 4, R); pred_boxes (B, A, 4) xyxy pixels decoded
        from box_logits; anchor_points (A, 2) and strides (A, 1) pixels; targets as in YOLO.forward.
        Returns {"box", "cls", "dfl"} scalar losses, gains applied, to be summed."""
        return self.detection_loss(cls_logits, box_logits, pred_boxes, anchor_points, strides, targets)[0]

    def detection_loss(self, cls_logits, box_logits, pred_boxes, anchor_points, strides,
                       targets) -> tuple[dict, Assignment]:
        """__call__'s losses, and the assignment they came from (a segmenter's mask loss uses its positives)."""
        gt_boxes, gt_labels, gt_mask = pad_targets(targets, cls_logits.device)
        target = assign_targets(cls_logits.detach().sigmoid(), pred_boxes.detach(), anchor_points,
                                gt_boxes, gt_labels, gt_mask, self.topk, self.alpha, self.beta)
        score_sum = target.scores.sum().clamp(min=1)  # no object at all: plain sum over anchors

        # With no positive in the batch, every term below is a sum over nothing (0, but in the graph).
        cls = F.binary_cross_entropy_with_logits(cls_logits, target.scores, reduction="sum") / score_sum
        fg = target.foreground  # (B, A)
        weight = target.scores.sum(-1)[fg]  # (P,) target score of each positive
        box = ((1 - aligned_iou(pred_boxes[fg], target.boxes[fg], "ciou")) * weight).sum()

        # DFL target: the ground truth's left, top, right, bottom distances from the anchor, in strides.
        points = anchor_points.expand(len(fg), -1, -1)[fg]  # (P, 2)
        stride = strides.expand(len(fg), -1, -1)[fg]  # (P, 1)
        sides = torch.cat([points - target.boxes[fg][:, :2], target.boxes[fg][:, 2:] - points], -1) / stride
        dfl = (distribution_focal_loss(box_logits[fg], sides) * weight).sum()
        losses = {"box": self.box_gain * box / score_sum, "cls": self.cls_gain * cls,
                  "dfl": self.dfl_gain * dfl / score_sum}
        return losses, target
