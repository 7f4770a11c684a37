"""What `explain` explains, per task: the scalar whose evidence a CAM or a saliency map shows.

Each function looks at one prepared (1, 3, h, w) image and returns an ExplainTarget: the module to run
(images -> outputs, one per image), `score_of` (one image's output -> a scalar tensor: pytorch_grad_cam's
target contract), and a name and score to print. The tasks' `explain_target` hooks call these.

    classifier    the class logit (auto: the top-1 class)
    YOLO          the class logit of the anchor point that produced the detection, before NMS: the
                  detection's score is its sigmoid, so gradients (and Score-CAM's masked re-runs, even
                  where the score falls below conf) reach it directly
    torchvision   the score of the output box matching the detection (same class, IoU >= MATCH_IOU;
                  0 when a re-run loses it): torchvision's post-processing keeps scores differentiable
    segmenter     the sum of the class's logits over its predicted mask (pytorch_grad_cam's
                  SemanticSegmentationTarget; a sigmoid head's background is the negated logit)
"""

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import FovealError, did_you_mean
from ..ops.boxes import box_iou, clip_boxes
from ..report import counted

MATCH_IOU = 0.5


@dataclass
class ExplainTarget:
    module: nn.Module  # (B, 3, h, w) images -> per-image outputs that score_of reads
    score_of: Callable[[object], torch.Tensor]  # one image's output -> scalar
    name: str  # what is explained, e.g. "circle" or "detection 0: circle"
    score: float  # its probability or confidence
    box: list[float] = field(default_factory=list)  # detect: the detection's xyxy box in input pixels


def class_index(spec: str, classes: list[str]) -> int:
    """The class a `target=` names: a class name, or an index into the classes."""
    if spec in classes:
        return classes.index(spec)
    if spec.isdigit() and int(spec) < len(classes):
        return int(spec)
    listed = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    raise FovealError(f"target: '{spec}' is not a class of this model{did_you_mean(spec, classes)}; "
                      f"name one or give its index 0..{len(classes) - 1} ({listed}), or auto")


class OutputAt:
    """One image's output at `index` (a class logit, or an anchor's class logit)."""

    def __init__(self, *index):
        self.index = index

    def __call__(self, output):
        return output[self.index]


def classifier_target(model, image, target: str, classes: list[str]) -> ExplainTarget:
    """The logit of class `target` (auto: the top-1 class); its softmax probability is the score."""
    with torch.no_grad():
        logits = model(image).float()[0]  # (C,)
    index = int(logits.argmax()) if target == "auto" else class_index(target, classes)
    return ExplainTarget(model, OutputAt(index), f"{classes[index]} (class {index})", float(logits.softmax(0)[index]))


class YoloClassLogits(nn.Module):
    """A foveal YOLO up to its class logits, before any threshold: (B, 3, H, W) -> (B, anchors, classes)."""

    def __init__(self, yolo: nn.Module):
        super().__init__()
        self.yolo = yolo

    def forward(self, images):
        return self.yolo.decode(self.yolo.forward_raw(images))[0]


class MatchedBoxScore:
    """The score of the output box of class `label` that overlaps `box` most (IoU >= MATCH_IOU), else 0."""

    def __init__(self, box: torch.Tensor, label: int):
        self.box, self.label = box, label

    def __call__(self, output: dict):
        if not len(output["scores"]):
            return output["boxes"].sum() * 0  # still a graph node: backward gives zero gradients
        iou = box_iou(output["boxes"].float(), self.box[None].to(output["boxes"].device))[:, 0]
        iou = torch.where(output["labels"] == self.label, iou, torch.zeros_like(iou))
        best = int(iou.argmax())
        return output["scores"][best] if iou[best] >= MATCH_IOU else output["scores"].sum() * 0


def detection_index(target: str, count: int, conf: float) -> int:
    if target == "auto":
        return 0
    if not target.isdigit():
        raise FovealError(f"target: a detection's index (0 = the best), or auto; got '{target}'")
    if int(target) >= count:
        found = f"0..{count - 1}" if count else "none"
        raise FovealError(f"target: detection {target} asked, but the image has {counted(count, 'detection')} at "
                          f"conf={conf:g} ({found})")
    return int(target)


def detection_target(model, image, target: str, classes: list[str]) -> ExplainTarget | None:
    """The detection `target` (its rank by score, 0 the best) of the model as predict runs it; None when
    the image has no detection above the model's conf and target is auto."""
    with torch.no_grad():
        output = model(image)[0]
    order = output["scores"].argsort(descending=True)
    if not len(order) and target == "auto":
        return None
    rank = detection_index(target, len(order), model.conf)
    k = int(order[rank])
    box, label, score = output["boxes"][k].float(), int(output["labels"][k]), float(output["scores"][k])
    name = f"detection {rank}: {classes[label]}"
    if hasattr(model, "forward_raw") and hasattr(model, "decode"):  # foveal's YOLO: find the anchor point
        module = YoloClassLogits(model)
        with torch.no_grad():
            _, _, boxes, _, _ = model.decode(model.forward_raw(image))
            logits = module(image)[0, :, label].float()
        clipped = clip_boxes(boxes[0].float(), *image.shape[-2:])
        distance = (logits.sigmoid() - score).abs() + (clipped - box).abs().sum(1)
        return ExplainTarget(module, OutputAt(int(distance.argmin()), label), name, score, box.tolist())
    return ExplainTarget(model, MatchedBoxScore(box, label), name, score, box.tolist())


class MaskedLogitSum:
    """sign * the sum of channel `channel`'s logits over `mask` (H, W): one image's (C, H, W) output."""

    def __init__(self, channel: int, mask: torch.Tensor, sign: float = 1.0):
        self.channel, self.mask, self.sign = channel, mask.float(), sign

    def __call__(self, output):
        return self.sign * (output[self.channel] * self.mask.to(output.device)).sum()


def segmentation_target(model, image, target: str, classes: list[str], threshold: float,
                        inside: torch.Tensor) -> ExplainTarget:
    """The class `target` over its predicted pixels of the image (`inside`: the (h, w) input pixels that
    show the image, not the letterbox's padding); auto: the largest predicted class but the background."""
    with torch.no_grad():
        logits = model(image).float()[0]  # (C, h, w); C = 1 for a sigmoid head (background, object)
    sigmoid = logits.shape[0] == 1
    labels = (logits[0].sigmoid() > threshold).long() if sigmoid else logits.argmax(0)
    inside = inside.to(labels.device)
    if target == "auto":
        counts = torch.bincount(labels[inside], minlength=len(classes))
        index = int(counts[1:].argmax()) + 1 if counts[1:].sum() else 0
    else:
        index = class_index(target, classes)
    mask = (labels == index) & inside
    note = "" if mask.any() else " (not predicted: its logits over the whole image)"
    mask = mask if mask.any() else inside
    if sigmoid:
        probability = logits[0].sigmoid() if index else 1 - logits[0].sigmoid()
        score_of = MaskedLogitSum(0, mask, 1.0 if index else -1.0)
    else:
        probability, score_of = logits.softmax(0)[index], MaskedLogitSum(index, mask)
    share = float(mask.sum()) / float(inside.sum())
    return ExplainTarget(model, score_of, f"{classes[index]} (class {index}), {share:.1%} of the image{note}",
                         float(probability[mask].mean()))
