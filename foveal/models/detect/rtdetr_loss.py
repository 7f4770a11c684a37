"""RT-DETR's training loss: Hungarian matching, then a varifocal class loss and L1 + GIoU box losses.

Matching: per image, each ground truth gets the one query of least cost (scipy's linear_sum_assignment),
cost = class_cost * focal-style class cost + l1_cost * L1 distance + giou_cost * -GIoU, so a query is
pulled towards one object only and the others towards "no object": duplicates are trained away.
The class loss is varifocal (VarifocalNet): a matched query's target at its object's class is its box's IoU
(the score is also the box's quality, which ranks detections for AP), and unmatched scores are pushed
down with a weight alpha * p^gamma (confident mistakes count, the many easy negatives little).
Every loss is summed over queries and divided by the batch's object count. It is taken on each decoder
layer, on the encoder's selected queries, and on each layer's denoising queries (matched by construction).
Boxes are cx, cy, w, h fractions of the input's size.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torchvision.ops import box_convert

from ...ops.boxes import aligned_iou, generalized_box_iou


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """logit(x), with x clamped away from 0 and 1 (a box side of 0 stays finite)."""
    x = x.clamp(eps, 1 - eps)
    return torch.log(x / (1 - x))


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """cost (Q, n), Q >= n -> (queries (n,), objects (n,)): the assignment of least total cost, objects
    in increasing order."""
    queries, objects = linear_sum_assignment(cost.detach().float().cpu().numpy())
    order = np.argsort(objects)
    return torch.as_tensor(queries[order], dtype=torch.long), torch.as_tensor(objects[order], dtype=torch.long)


@dataclass
class RTDETRLoss:
    """Weights of the matching cost and of the losses (RT-DETR's); alpha and gamma of the focal-style
    matching cost and of the varifocal loss."""

    class_cost: float = 2.0
    l1_cost: float = 5.0
    giou_cost: float = 2.0
    class_weight: float = 1.0
    l1_weight: float = 5.0
    giou_weight: float = 2.0
    focal_alpha: float = 0.25  # matching cost
    alpha: float = 0.75  # varifocal loss: the weight of negatives
    gamma: float = 2.0

    def __call__(self, logits, boxes, selected_logits, selected_boxes, targets: list[dict],
                 noised: dict | None = None) -> dict:
        """logits (L, B, P + K, C) and boxes (L, B, P + K, 4) of every decoder layer, P denoising queries
        first (P = 0 without `noised`); the encoder's selected_logits (B, K, C), selected_boxes (B, K, 4);
        targets: per image {labels (n,), boxes (n, 4) cx, cy, w, h fractions} -> {cls, l1, giou}."""
        count = max(sum(len(t["labels"]) for t in targets), 1)
        total = noised["total"] if noised is not None else 0
        parts = [(selected_logits, selected_boxes, None, count)]  # (logits, boxes, matches, divisor)
        parts += [(layer_logits[:, total:], layer_boxes[:, total:], None, count)
                  for layer_logits, layer_boxes in zip(logits, boxes)]
        if noised is not None:  # each object is in every group once
            known = denoising_matches(targets, noised)
            parts += [(layer_logits[:, :total], layer_boxes[:, :total], known, count * noised["groups"])
                      for layer_logits, layer_boxes in zip(logits, boxes)]
        losses = {"cls": 0.0, "l1": 0.0, "giou": 0.0}
        for part_logits, part_boxes, matches, divisor in parts:
            if matches is None:
                matches = self.match(part_logits, part_boxes, targets)
            for key, value in self.losses(part_logits, part_boxes, targets, matches, divisor).items():
                losses[key] = losses[key] + value
        return losses

    @torch.no_grad()
    def match(self, logits, boxes, targets) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per image, (queries, objects) of the least-cost assignment."""
        matches = []
        for image_logits, image_boxes, target in zip(logits, boxes, targets):
            if len(target["labels"]) == 0:
                matches.append((torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.long)))
                continue
            matches.append(hungarian_match(self.cost(image_logits, image_boxes, target)))
        return matches

    def cost(self, logits, boxes, target) -> torch.Tensor:
        """(Q, n) matching cost of one image's queries (Q, C) logits, (Q, 4) boxes against its n objects."""
        p = logits.float().sigmoid()[:, target["labels"]]  # (Q, n)
        # focal-style: the focal loss of calling it the object's class minus that of calling it nothing
        positive = self.focal_alpha * (1 - p) ** self.gamma * -(p + 1e-8).log()
        negative = (1 - self.focal_alpha) * p**self.gamma * -(1 - p + 1e-8).log()
        l1 = torch.cdist(boxes.float(), target["boxes"], p=1)
        giou = generalized_box_iou(box_convert(boxes.float(), "cxcywh", "xyxy"),
                                   box_convert(target["boxes"], "cxcywh", "xyxy"))
        return self.class_cost * (positive - negative) + self.l1_cost * l1 - self.giou_cost * giou

    def losses(self, logits, boxes, targets, matches, count: float) -> dict:
        """Varifocal, L1 and GIoU losses of (B, Q, C) logits and (B, Q, 4) boxes given the matches."""
        images = torch.cat([torch.full_like(queries, i) for i, (queries, _) in enumerate(matches)]).to(logits.device)
        queries = torch.cat([queries for queries, _ in matches]).to(logits.device)
        wanted = torch.cat([t["boxes"][objects.to(t["boxes"].device)] for t, (_, objects) in zip(targets, matches)])
        labels = torch.cat([t["labels"][objects.to(t["labels"].device)] for t, (_, objects) in zip(targets, matches)])
        found = boxes[images, queries].float()  # (M, 4)
        corners, wanted_corners = box_convert(found, "cxcywh", "xyxy"), box_convert(wanted, "cxcywh", "xyxy")
        iou = aligned_iou(corners, wanted_corners).detach().clamp(min=0)
        target = torch.zeros_like(logits, dtype=torch.float32)
        target[images, queries, labels] = iou  # the matched class's target is the box's quality
        positive = torch.zeros_like(target)
        positive[images, queries, labels] = 1.0
        probability = logits.float().sigmoid().detach()
        weight = self.alpha * probability**self.gamma * (1 - positive) + target
        varifocal = F.binary_cross_entropy_with_logits(logits.float(), target, weight=weight, reduction="sum")
        l1 = F.l1_loss(found, wanted, reduction="sum")
        giou = (1 - aligned_iou(corners, wanted_corners, "giou")).sum()
        return {"cls": self.class_weight * varifocal / count, "l1": self.l1_weight * l1 / count,
                "giou": self.giou_weight * giou / count}


def denoising_matches(targets: list[dict], noised: dict) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per image, (queries, objects) of its positive denoising queries: object j is query g * slots + j of
    every group g (the negatives, at slots / 2 + j, stay unmatched: no object)."""
    matches = []
    for target in targets:
        objects = torch.arange(len(target["labels"]))
        starts = torch.arange(noised["groups"]) * noised["slots"]
        matches.append(((starts[:, None] + objects[None]).flatten(), objects.repeat(noised["groups"])))
    return matches
