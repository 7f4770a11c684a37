"""foveal's one-stage instance segmenters: yolo_n-seg, yolo_s-seg, yolo_m-seg, the detector of
foveal/models/detect/yolo.py (the same backbone, neck, head, assignment and post-processing) plus masks.

    prototypes     from the stride-8 neck map, upsampled x2: k masks (B, k, H/4, W/4) shared by every object
    coefficients   a third head branch beside box and class: k numbers per anchor point

An object's mask is sigmoid(coefficients . prototypes) cropped to its box (YOLACT's assembly, in
YOLOv8-Seg's layout): the prototypes are a basis the whole image shares, each detection picks its
mix of them, and the crop removes what the mix lights up elsewhere (another object of the class).
A mask thus costs k multiply-adds a pixel, not a second stage as in Mask R-CNN.

Training: the detector's loss, plus for every positive anchor of the task-aligned assignment the
binary cross-entropy of its mask logits against its ground truth's mask, averaged over the pixels
inside that ground truth's box at the prototypes' size (small objects weigh as much as large ones),
then over the positives: YOLOSegLoss.

Eval: the detector's NMS picks the detections; each one's mask is assembled from the coefficients
of the anchor it came from and returned as Mask R-CNN does (tasks/segment/instance.py reads them):
"masks" (K, H, W) float probabilities at the input size, zero outside the detection's box.

Export (foveal/engine/onnx_export.py): the graph ends before the assembly, whose output size is the
input's and whose count is the data's: with NMS inside, detections (B, max_det, 6 + k), the detector's
rows plus each one's k coefficients, and the prototypes (B, k, H/4, W/4); without, the decoded boxes,
class scores, coefficients (B, A, k) and prototypes, NMS after. Either way the masks are then assembled
by assemble_masks, the function the PyTorch model calls (run_exported).
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...ops.boxes import box_masks, box_spans
from ...registry import register_model
from ..detect.yolo import YOLO, ConvBNAct, DecodedOutputs
from ..detect.yolo_loss import Assignment, YOLOLoss

PROTOTYPE_STRIDE = 4  # input pixels per prototype pixel: the stride-8 map upsampled once
MASKS = 32  # prototypes, and coefficients per anchor (YOLACT's and YOLOv8-Seg's k)
COEFFICIENT_STD = 0.01  # initial coefficient weights: every mask starts near 0.5, not confidently wrong
# (PyTorch's default instead: a first mask loss twice as high, still 40% higher after 60 steps on 16 scenes)


class Prototypes(nn.Module):
    """The stride-8 neck map -> k prototype masks at stride 4: a 3x3 conv, x2 upsampling, a 3x3 conv, a 1x1."""

    def __init__(self, cin: int, hidden: int, masks: int):
        super().__init__()
        self.conv1 = ConvBNAct(cin, hidden, 3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.conv2 = ConvBNAct(hidden, hidden, 3)
        self.out = ConvBNAct(hidden, masks)

    def forward(self, x):  # (B, cin, H/8, W/8) -> (B, masks, H/4, W/4)
        return self.out(self.conv2(self.upsample(self.conv1(x))))


def mask_logits(coefficients: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """coefficients (K, k) . prototypes (k, h, w) -> (K, h, w) mask logits."""
    return (coefficients @ prototypes.flatten(1)).view(-1, *prototypes.shape[-2:])


def bilinear_taps(size_in: int, size_out: int, device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower index, upper index, upper weight) of each of size_out samples resampled bilinearly from size_in,
    where F.interpolate(align_corners=False) takes them: source (out + 0.5) * in / out - 0.5, edges clamped."""
    source = ((torch.arange(size_out, device=device, dtype=torch.float32) + 0.5) * (size_in / size_out) - 0.5)
    source = source.clamp(min=0)
    lower = source.floor().long().clamp(max=size_in - 1)
    return lower, (lower + 1).clamp(max=size_in - 1), source - lower


def assemble_masks(coefficients: torch.Tensor, prototypes: torch.Tensor, boxes: torch.Tensor, size) -> torch.Tensor:
    """(K, H, W) float mask probabilities at the input size `size` (H, W) of K detections: their logits
    upsampled (bilinear, before the sigmoid: smooth edges), zero outside each xyxy box (K, 4) (box_masks').

    Only each box's pixels are resampled, as F.interpolate would sample them (to 1e-6): the whole image's
    for every detection cost 6 ms of a 36 ms yolo_n-seg frame at 320 px with 10 masks, the boxes' 1.5."""
    height, width = size
    logits = mask_logits(coefficients, prototypes).float()
    masks = logits.new_zeros((len(logits), height, width))
    row_low, row_high, row_weight = bilinear_taps(logits.shape[1], height, logits.device)
    column_low, column_high, column_weight = bilinear_taps(logits.shape[2], width, logits.device)
    for k, (top, bottom, left, right) in enumerate(box_spans(boxes, height, width).tolist()):
        if bottom <= top or right <= left:
            continue
        weight = row_weight[top:bottom, None]
        rows = logits[k, row_low[top:bottom]] * (1 - weight) + logits[k, row_high[top:bottom]] * weight
        weight = column_weight[left:right]
        masks[k, top:bottom, left:right] = (rows[:, column_low[left:right]] * (1 - weight)
                                            + rows[:, column_high[left:right]] * weight).sigmoid()
    return masks


def mask_loss(coefficients: torch.Tensor, prototypes: torch.Tensor, assignment: Assignment,
              targets: list[dict]) -> torch.Tensor:
    """Mean over the positive anchors of the mask BCE inside each one's ground-truth box, at the prototypes'
    size. coefficients (B, A, k); prototypes (B, k, h, w); targets' "masks" (N, H, W) at the input size."""
    height, width = prototypes.shape[-2:]
    total, count = prototypes.sum() * 0, 0  # in the graph even with no positive
    for b, target in enumerate(targets):
        positive = assignment.foreground[b]
        if not positive.any():
            continue
        # each ground truth's mask at the prototypes' size: the fraction of each cell it covers (soft edges)
        truth = F.interpolate(target["masks"][None].to(prototypes.device, torch.float32), size=(height, width),
                              mode="area")[0]
        truth = truth[assignment.owners[b, positive]]  # (P, h, w)
        logits = mask_logits(coefficients[b, positive], prototypes[b]).float()
        crop = box_masks(assignment.boxes[b, positive] / PROTOTYPE_STRIDE, height, width)
        bce = F.binary_cross_entropy_with_logits(logits, truth, reduction="none")
        total = total + ((bce * crop).sum((1, 2)) / crop.sum((1, 2)).clamp(min=1)).sum()
        count += len(truth)
    return total / max(count, 1)


@dataclass
class YOLOSegLoss(YOLOLoss):
    """YOLOLoss plus the mask term; mask_gain weighs it as YOLOv8-Seg does (its box gain: a mask, like a box,
    is what the object's pixels should be)."""

    mask_gain: float = 7.5

    def __call__(self, cls_logits, box_logits, pred_boxes, anchor_points, strides, targets,
                 coefficients=None, prototypes=None) -> dict:
        """YOLOLoss's arguments plus coefficients (B, A, k) and prototypes (B, k, H/4, W/4); targets also
        carry "masks". Returns {"box", "cls", "dfl", "mask"}, gains applied, to be summed."""
        losses, assignment = self.detection_loss(cls_logits, box_logits, pred_boxes, anchor_points, strides, targets)
        losses["mask"] = self.mask_gain * mask_loss(coefficients, prototypes, assignment, targets)
        return losses


class YOLOSeg(YOLO):
    """YOLO with a prototype branch and a mask-coefficient branch per level; see the module docstring.

    Training: {"box", "cls", "dfl", "mask"} losses (targets carry "masks" (N, H, W) at the input size).
    Eval: per image {boxes, scores, labels, masks (K, H, W) probabilities}. `loss`: None for YOLOSegLoss().
    starts_from: the detector whose weights pretrained= also takes (backbone, neck and head are its own).
    """

    def __init__(self, num_classes: int, width: float = 0.25, depth: float = 0.34, max_channels: int = 1024,
                 masks: int = MASKS, loss: YOLOSegLoss | None = None, starts_from: str = "", **kwargs):
        super().__init__(num_classes, width, depth, max_channels, loss=loss or YOLOSegLoss(), **kwargs)
        self.starts_from = starts_from
        channels = self.backbone.out_channels
        self.prototypes = Prototypes(channels[0], channels[0], masks)
        branch_width = max(channels[0] // 4, masks)
        self.coefficient_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, branch_width, 3), ConvBNAct(branch_width, branch_width, 3),
                          nn.Conv2d(branch_width, masks, 1)) for c in channels)
        for branch in self.coefficient_branches:
            nn.init.normal_(branch[-1].weight, std=COEFFICIENT_STD)
            nn.init.zeros_(branch[-1].bias)

    def mask_parts(self, features: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The neck's maps -> coefficients (B, A, k), the anchors in decode's order, and prototypes (B, k, H/4, W/4)."""
        coefficients = torch.cat([branch(x).flatten(2) for x, branch in zip(features, self.coefficient_branches)],
                                 2).transpose(1, 2)
        return coefficients, self.prototypes(features[0])

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.exported is not None and not self.training:
            return self.exported_forward(images)
        features = self.features(images)
        cls_logits, box_logits, boxes, points, strides = self.decode(self.head(features))
        coefficients, prototypes = self.mask_parts(features)
        if self.training:
            if targets is None:
                raise ValueError("YOLOSeg needs targets in training mode; call model.eval() to predict")
            return self.loss(cls_logits, box_logits, boxes, points, strides, targets, coefficients, prototypes)
        return self.segment(cls_logits.sigmoid(), boxes, coefficients, prototypes, images.shape[-2:])

    def segment(self, scores, boxes, coefficients, prototypes, size) -> list[dict]:
        """scores (B, A, C), boxes (B, A, 4), coefficients (B, A, k), prototypes (B, k, h, w) -> per image
        {boxes, scores, labels, masks}: the detector's selection, then each detection's mask."""
        results = []
        for image_scores, image_boxes, image_coefficients, image_prototypes in zip(scores, boxes, coefficients,
                                                                                   prototypes):
            detections, anchors = self.select(image_scores, image_boxes, size)
            detections["masks"] = assemble_masks(image_coefficients[anchors], image_prototypes, detections["boxes"],
                                                 size)
            results.append(detections)
        return results

    def export_module(self, nms: bool = False) -> nn.Module:
        """What ONNX export traces: DecodedOutputs' boxes and scores (with `nms`, as nms_inputs prepares them)
        plus the coefficients (B, A, k) and prototypes (B, k, H/4, W/4); the exporter appends NMS, which
        gathers each kept detection's coefficients beside its row."""
        return SegmentOutputs(self, nms)

    def exported_forward(self, images: torch.Tensor) -> list[dict]:
        """Eval through run_exported's graph: its detections (or foveal's NMS on its decoded outputs), then
        the masks assembled as forward assembles them."""
        size = images.shape[-2:]
        if not self.exported_nms:
            boxes, scores, coefficients, prototypes = self.exported(images)
            return self.segment(scores, boxes, coefficients, prototypes, size)
        table, prototypes = self.exported(images)
        results = []
        for rows, image_prototypes in zip(self.kept_rows(table), prototypes):
            boxes = rows[:, :4]
            results.append({"boxes": boxes, "scores": rows[:, 4], "labels": rows[:, 5].long(),
                            "masks": assemble_masks(rows[:, 6:], image_prototypes, boxes, size)})
        return results


class SegmentOutputs(DecodedOutputs):
    """A YOLOSeg's DecodedOutputs plus its mask coefficients (float32: with NMS they join the rows) and prototypes."""

    def forward(self, images):
        features = self.yolo.features(images)
        boxes, scores = self.boxes_and_scores(self.yolo.head(features), images.shape[-2:])
        coefficients, prototypes = self.yolo.mask_parts(features)
        return boxes, scores, coefficients.float(), prototypes


# segment's defaults (AdamW at 1e-3, weight decay 1e-4, batch 8) are Mask R-CNN's and the U-Nets'; a yolo
# trains with the detector's (tasks/detect), as the README's yolo-seg figures were measured
DETECTOR_TRAINING = {"lr": 4e-3, "weight_decay": 0.05, "batch": 16}


@register_model("segment", "yolo_n-seg", kind="instance", defaults=DETECTOR_TRAINING)
def yolo_n_seg(num_classes: int, imgsz: int = 320, **kwargs) -> YOLOSeg:
    """yolo_n with masks: ~3M parameters; pretrained= also takes yolo_n's detection weights."""
    return YOLOSeg(num_classes, width=0.25, depth=0.34, starts_from="yolo_n", **kwargs)


@register_model("segment", "yolo_s-seg", kind="instance", defaults=DETECTOR_TRAINING)
def yolo_s_seg(num_classes: int, imgsz: int = 320, **kwargs) -> YOLOSeg:
    """yolo_s with masks: ~12M parameters; pretrained= also takes yolo_s's detection weights."""
    return YOLOSeg(num_classes, width=0.5, depth=0.34, starts_from="yolo_s", **kwargs)


@register_model("segment", "yolo_m-seg", kind="instance", defaults=DETECTOR_TRAINING)
def yolo_m_seg(num_classes: int, imgsz: int = 320, **kwargs) -> YOLOSeg:
    """yolo_m with masks: ~27M parameters, for a GPU; pretrained= also takes yolo_m's detection weights."""
    return YOLOSeg(num_classes, width=0.75, depth=0.67, max_channels=768, starts_from="yolo_m", **kwargs)
