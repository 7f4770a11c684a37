"""foveal's one-stage pose models: yolo_n-pose, yolo_s-pose, yolo_m-pose, the detector of
foveal/models/detect/yolo.py (the same backbone, neck, head, assignment and post-processing) plus keypoints.

    keypoint branch   a third head branch beside box and class, per level: K (dx, dy, visibility logit)
                      per anchor point, a joint at (anchor + 2 * (dx, dy) * stride) pixels

Each detection carries its own K joints, regressed from the anchor it came from: no heatmaps, no
grouping of joints into people afterwards (the box already is the person), one pass for any count.

Training: the detector's loss, plus for every positive anchor of the task-aligned assignment (and its
ground truth, Assignment.owners) an OKS-based keypoint loss, 1 - exp(-d^2 / (2 * area * (2 sigma)^2)) per
labelled joint (v > 0), COCO's similarity with the ground truth's box area as the object's scale, averaged
over the joints, then over the positives; and the BCE of each joint's visibility logit against "labelled"
(v > 0): YOLOPoseLoss. The OKS form makes an error cost the same on a small person as on a large one,
and on a joint whose annotators agree less (a hip: larger sigma) less than on an eye.

Eval: the detector's NMS picks the detections; each one's keypoints are those of the anchor it came from:
"keypoints" (M, K, 3), x, y input pixels (clipped to the image) and the probability that the joint is
labelled (COCO's visibility flags 1 and 2, "there, seen or not").

Export (foveal/engine/onnx_export.py): the graph gives the keypoints decoded as eval returns them,
(B, A, 3K); with NMS inside, the exporter gathers each kept detection's keypoints beside its row,
detections (B, max_det, 6 + 3K); without, boxes, scores and keypoints, foveal's NMS after them.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FovealError
from ...registry import register_model
from ..detect.yolo import YOLO, ConvBNAct, DecodedOutputs
from ...ops.keypoints import default_sigmas
from ..detect.yolo_loss import Assignment, YOLOLoss

KEYPOINT_STD = 0.01  # initial keypoint weights: every joint starts at its anchor point, visibility at 0.5


def decode_keypoints(raw: torch.Tensor, points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
    """raw (B, A, K, 3) branch outputs -> (B, A, K, 3): x, y pixels and the visibility logit.

    A joint is (dx, dy) * 2 strides from its anchor point: zero puts every joint at the anchor (the object's
    middle, where the box-centre guess starts), and an output of about 1 reaches the 2 strides a joint
    usually lies from it, so the branch works at its initial scale (YOLOv8-Pose's factor 2, from the cell
    centre rather than its corner)."""
    xy = points[:, None] + 2 * raw[..., :2] * strides[:, None]  # (A, 1, 2) + (B, A, K, 2)
    return torch.cat([xy, raw[..., 2:]], -1)


def output_keypoints(keypoints: torch.Tensor, image_size) -> torch.Tensor:
    """Decoded keypoints (..., K, 3) -> eval's form: x, y clipped to the image (H, W), visibility probability."""
    height, width = image_size
    return torch.stack([keypoints[..., 0].clamp(0, width), keypoints[..., 1].clamp(0, height),
                        keypoints[..., 2].sigmoid()], -1)


def keypoint_loss(predicted: torch.Tensor, truth: torch.Tensor, areas: torch.Tensor,
                  sigmas: torch.Tensor) -> torch.Tensor:
    """Mean over the objects with a labelled joint of 1 - OKS-similarity averaged over their labelled joints.
    predicted (P, K, 2) pixels; truth (P, K, 3) x, y, v; areas (P,) the objects' scale s^2 (box area);
    sigmas (K,). Per joint 1 - exp(-d^2 / (2 s^2 k^2)), k = 2 sigma: COCO's OKS term."""
    labelled = (truth[..., 2] > 0).float()  # (P, K)
    squared = (predicted - truth[..., :2]).pow(2).sum(-1)  # (P, K)
    scale = 2 * areas.clamp(min=1)[:, None] * (2 * sigmas).pow(2)  # (P, K)
    errors = (1 - torch.exp(-squared / scale)) * labelled
    counted = labelled.sum(1)
    per_object = errors.sum(1) / counted.clamp(min=1)
    return per_object.sum() / (counted > 0).sum().clamp(min=1)


def positive_keypoints(assignment: Assignment, targets: list[dict], device) -> torch.Tensor:
    """(P, K, 3) ground-truth keypoints of the positive anchors, in the order of a (B, A) mask's selection."""
    return torch.cat([target["keypoints"].to(device, torch.float32)[assignment.owners[b, assignment.foreground[b]]]
                      for b, target in enumerate(targets)])


@dataclass
class YOLOPoseLoss(YOLOLoss):
    """YOLOLoss plus the keypoint and visibility terms, weighted as YOLOv8-Pose weighs them (pose 12, kobj 1):
    the OKS term is at most 1 a joint, smaller than a box's CIoU, and the joints are the task's point."""

    keypoint_gain: float = 12.0
    visibility_gain: float = 1.0

    def __call__(self, cls_logits, box_logits, pred_boxes, anchor_points, strides, targets,
                 keypoints=None, sigmas=None) -> dict:
        """YOLOLoss's arguments plus keypoints (B, A, K, 3) as decode_keypoints gives them and sigmas (K,);
        targets also carry "keypoints" (N, K, 3). Returns {"box", "cls", "dfl", "keypoint", "visibility"},
        gains applied, to be summed."""
        losses, assignment = self.detection_loss(cls_logits, box_logits, pred_boxes, anchor_points, strides, targets)
        predicted = keypoints[assignment.foreground]  # (P, K, 3)
        truth = positive_keypoints(assignment, targets, keypoints.device)
        boxes = assignment.boxes[assignment.foreground]
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        losses["keypoint"] = self.keypoint_gain * keypoint_loss(predicted[..., :2], truth, areas, sigmas)
        labelled = (truth[..., 2] > 0).float()
        visibility = F.binary_cross_entropy_with_logits(predicted[..., 2], labelled, reduction="sum")
        losses["visibility"] = self.visibility_gain * visibility / max(labelled.numel(), 1)
        return losses


class YOLOPose(YOLO):
    """YOLO with a keypoint branch per level; see the module docstring.

    Training: {"box", "cls", "dfl", "keypoint", "visibility"} losses (targets carry "keypoints" (N, K, 3)).
    Eval: per image {boxes, scores, labels, keypoints (M, K, 3)}. sigmas: the K OKS sigmas of the keypoint
    loss (None: default_sigmas). `loss`: None for YOLOPoseLoss(). starts_from: the detector whose weights
    pretrained= also takes (backbone, neck and head are its own).
    """

    def __init__(self, num_classes: int, num_keypoints: int = 17, width: float = 0.25, depth: float = 0.34,
                 max_channels: int = 1024, sigmas=None, loss: YOLOPoseLoss | None = None, starts_from: str = "",
                 **kwargs):
        super().__init__(num_classes, width, depth, max_channels, loss=loss or YOLOPoseLoss(), **kwargs)
        if num_keypoints < 1:
            raise FovealError(f"num_keypoints: expected at least 1, got {num_keypoints}")
        sigmas = default_sigmas(num_keypoints) if sigmas is None else tuple(sigmas)
        if len(sigmas) != num_keypoints or min(sigmas) <= 0:
            raise FovealError(f"sigmas: expected {num_keypoints} positive values (one per keypoint), "
                              f"got {list(sigmas)}")
        self.register_buffer("sigmas", torch.tensor(sigmas, dtype=torch.float32), persistent=False)
        self.num_keypoints, self.starts_from = num_keypoints, starts_from
        channels = self.backbone.out_channels
        branch_width = max(channels[0] // 4, 3 * num_keypoints)
        self.keypoint_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, branch_width, 3), ConvBNAct(branch_width, branch_width, 3),
                          nn.Conv2d(branch_width, 3 * num_keypoints, 1)) for c in channels)
        for branch in self.keypoint_branches:
            nn.init.normal_(branch[-1].weight, std=KEYPOINT_STD)
            nn.init.zeros_(branch[-1].bias)

    def keypoints(self, features: list[torch.Tensor], points: torch.Tensor, strides: torch.Tensor) -> torch.Tensor:
        """The neck's maps -> (B, A, K, 3) decoded keypoints (decode_keypoints), the anchors in decode's order."""
        raw = torch.cat([branch(x).flatten(2) for x, branch in zip(features, self.keypoint_branches)], 2)
        return decode_keypoints(raw.transpose(1, 2).unflatten(-1, (self.num_keypoints, 3)), points, strides)

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        if self.exported is not None and not self.training:
            return self.exported_forward(images)
        features = self.features(images)
        cls_logits, box_logits, boxes, points, strides = self.decode(self.head(features))
        keypoints = self.keypoints(features, points, strides)
        if self.training:
            if targets is None:
                raise ValueError("YOLOPose needs targets in training mode; call model.eval() to predict")
            return self.loss(cls_logits, box_logits, boxes, points, strides, targets, keypoints, self.sigmas)
        size = images.shape[-2:]
        return self.pose(cls_logits.sigmoid(), boxes, output_keypoints(keypoints, size), size)

    def pose(self, scores, boxes, keypoints, size) -> list[dict]:
        """scores (B, A, C), boxes (B, A, 4), keypoints (B, A, K, 3) in eval's form -> per image
        {boxes, scores, labels, keypoints}: the detector's selection, then each detection's anchor's joints."""
        results = []
        for image_scores, image_boxes, image_keypoints in zip(scores, boxes, keypoints):
            detections, anchors = self.select(image_scores, image_boxes, size)
            detections["keypoints"] = image_keypoints[anchors].float()
            results.append(detections)
        return results

    def export_module(self, nms: bool = False) -> nn.Module:
        """What ONNX export traces: DecodedOutputs' boxes and scores (with `nms`, as nms_inputs prepares them)
        plus the keypoints in eval's form (B, A, 3K); the exporter appends NMS, which gathers each kept
        detection's keypoints beside its row."""
        return PoseOutputs(self, nms)

    def exported_forward(self, images: torch.Tensor) -> list[dict]:
        """Eval through run_exported's graph: its detections with their keypoints, or foveal's NMS on its
        decoded outputs."""
        if not self.exported_nms:
            boxes, scores, keypoints = self.exported(images)
            keypoints = keypoints.unflatten(-1, (self.num_keypoints, 3))
            return self.pose(scores, boxes, keypoints, images.shape[-2:])
        return [{"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long(),
                 "keypoints": rows[:, 6:].unflatten(-1, (self.num_keypoints, 3))}
                for rows in self.kept_rows(self.exported(images)[0])]


class PoseOutputs(DecodedOutputs):
    """A YOLOPose's DecodedOutputs plus its keypoints in eval's form, (B, A, 3K) float32 (with NMS they join
    the rows)."""

    def forward(self, images):
        features = self.yolo.features(images)
        raw = self.yolo.head(features)
        boxes, scores = self.boxes_and_scores(raw, images.shape[-2:])
        _, _, _, points, strides = self.yolo.decode(raw)
        keypoints = output_keypoints(self.yolo.keypoints(features, points, strides), images.shape[-2:])
        return boxes, scores, keypoints.flatten(2).float()


@register_model("pose", "yolo_n-pose")
def yolo_n_pose(num_classes: int, num_keypoints: int = 17, imgsz: int = 320, **kwargs) -> YOLOPose:
    """yolo_n with keypoints: ~3.3M parameters (17 joints); pretrained= also takes yolo_n's detection weights."""
    return YOLOPose(num_classes, num_keypoints, width=0.25, depth=0.34, starts_from="yolo_n", **kwargs)


@register_model("pose", "yolo_s-pose")
def yolo_s_pose(num_classes: int, num_keypoints: int = 17, imgsz: int = 320, **kwargs) -> YOLOPose:
    """yolo_s with keypoints: ~11.6M parameters; pretrained= also takes yolo_s's detection weights."""
    return YOLOPose(num_classes, num_keypoints, width=0.5, depth=0.34, starts_from="yolo_s", **kwargs)


@register_model("pose", "yolo_m-pose")
def yolo_m_pose(num_classes: int, num_keypoints: int = 17, imgsz: int = 320, **kwargs) -> YOLOPose:
    """yolo_m with keypoints: ~26.5M parameters, for a GPU; pretrained= also takes yolo_m's detection weights."""
    return YOLOPose(num_classes, num_keypoints, width=0.75, depth=0.67, max_channels=768, starts_from="yolo_m",
                    **kwargs)
