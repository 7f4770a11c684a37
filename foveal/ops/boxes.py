"""Box geometry as pure functions on torch tensors.

Formats, each a (..., 4) tensor in absolute pixels unless normalised (divided by image size):
    xyxy    x1, y1, x2, y2    corners (VOC, and foveal's own form: see foveal/data/detection.py)
    xywh    x1, y1, w, h      top-left corner and size (COCO)
    cxcywh  cx, cy, w, h      centre and size (YOLO)
Widths are x2 - x1 with no "+1", as COCO. Pairwise functions give (N, M) for N and M boxes;
`aligned_iou` compares box i of one set with box i of the other and gives (N,), as a box loss needs.
`box_iou_numpy` is box_iou on numpy arrays, for the trackers: a frame's matching takes microseconds, less
than a round trip through tensors would.
"""

import math

import numpy as np
import torch
import torchvision.ops as tv
from torch import Tensor
from torchvision.ops import box_area, complete_box_iou, distance_box_iou, generalized_box_iou

from foveal.errors import FovealError, did_you_mean

__all__ = ["BOX_FORMATS", "convert_boxes", "normalize_boxes", "denormalize_boxes", "clip_boxes", "box_area",
           "box_iou", "box_iou_numpy", "generalized_box_iou", "distance_box_iou", "complete_box_iou", "aligned_iou",
           "nms", "NMS_IOU", "unletterbox_boxes", "box_masks", "box_spans"]

BOX_FORMATS = ("xyxy", "xywh", "cxcywh")
NMS_IOU = 0.7  # foveal's one default NMS threshold for detection (Ultralytics validates yolo models at 0.7)
IOU_KINDS = ("iou", "giou", "diou", "ciou")


def _check(value: str, choices, what: str) -> None:
    if value not in choices:
        raise FovealError(f"unknown {what} '{value}'{did_you_mean(value, choices)}; choose from {', '.join(choices)}")


def convert_boxes(boxes: Tensor, src: str, dst: str) -> Tensor:
    """(N, 4) boxes from format `src` to `dst` (any of xyxy, xywh, cxcywh; absolute or normalised alike)."""
    _check(src, BOX_FORMATS, "box format")
    _check(dst, BOX_FORMATS, "box format")
    return boxes.clone() if src == dst else tv.box_convert(boxes, src, dst)


def _scale(height: float, width: float, like: Tensor) -> Tensor:
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return torch.tensor([width, height, width, height], dtype=dtype, device=like.device)


def normalize_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """(N, 4) pixel boxes to fractions of the image size; any format, since every format is x, y, x, y-like."""
    return boxes / _scale(height, width, boxes)


def denormalize_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """(N, 4) boxes in fractions of the image size back to pixels; any format."""
    return boxes * _scale(height, width, boxes)


def clip_boxes(boxes: Tensor, height: float, width: float) -> Tensor:
    """(N, 4) xyxy boxes clamped to the image, x to [0, width] and y to [0, height]."""
    x = boxes[..., 0::2].clamp(0, width)  # (N, 2): x1, x2
    y = boxes[..., 1::2].clamp(0, height)
    return torch.stack((x, y), dim=-1).reshape(boxes.shape)


def unletterbox_boxes(boxes: Tensor, scale: float, pad, height: int, width: int) -> Tensor:
    """(K, 4) xyxy boxes of a letterboxed image (p' = p * scale + pad) back in the original image's
    pixels, clipped to its height x width (ops/letterbox.py's order: (height, width), as torch's)."""
    x_pad, y_pad = float(pad[0]), float(pad[1])
    boxes = (boxes.float() - boxes.new_tensor([x_pad, y_pad, x_pad, y_pad])) / float(scale)
    return clip_boxes(boxes, height, width)


def box_masks(boxes: Tensor, height: int, width: int) -> Tensor:
    """(N, height, width) bool: the pixels whose centre lies in each xyxy box (N, 4), so the box a mask
    gives (x1 = its first column, x2 = its last + 1) fills that mask's columns and rows exactly."""
    xs = torch.arange(width, device=boxes.device, dtype=torch.float32) + 0.5
    ys = torch.arange(height, device=boxes.device, dtype=torch.float32) + 0.5
    x1, y1, x2, y2 = (boxes[:, i, None].float() for i in range(4))  # each (N, 1)
    columns = (xs >= x1) & (xs < x2)  # (N, width)
    rows = (ys >= y1) & (ys < y2)  # (N, height)
    return rows[:, :, None] & columns[:, None, :]


def box_spans(boxes: Tensor, height: int, width: int) -> Tensor:
    """(N, 4) int64 first row, end row, first column, end column (ends exclusive) of the pixels box_masks
    gives each xyxy box: those whose centre lies in it, within the height x width image."""
    first = torch.ceil(boxes[:, :2].float() - 0.5).clamp(min=0)
    end = torch.ceil(boxes[:, 2:].float() - 0.5)
    return torch.stack([first[:, 1], end[:, 1].clamp(max=height), first[:, 0], end[:, 0].clamp(max=width)], 1).long()


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """(N, M) IoU of every xyxy box of a (N, 4) with every box of b (M, 4).

    Equal to torchvision's box_iou, except where both boxes have no area (a collapsed prediction
    against a zero padding row): torchvision's gives 0 / 0 = NaN there, this gives 0.
    """
    top_left = torch.max(a[:, None, :2], b[None, :, :2])  # (N, M, 2)
    bottom_right = torch.min(a[:, None, 2:], b[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(-1)  # (N, M)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    empty = union <= 0
    return torch.where(empty, torch.zeros_like(inter), inter / union.masked_fill(empty, 1))


def box_iou_numpy(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box_iou for numpy: (N, M) float64 IoU of xyxy boxes a (N, 4) and b (M, 4), 0 where both have no area
    (the tracking scores and the trackers match boxes frame by frame, where a tensor's overhead would cost
    more than the arithmetic)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]  # (N, 1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]  # (1, M, 4); width and height apart: faster than (N, M, 2)
    inter_w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    inter_h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = inter_w * inter_h
    union = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1]) + (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union -= inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def aligned_iou(a: Tensor, b: Tensor, kind: str = "iou", eps: float = 1e-7) -> Tensor:
    """(N,) IoU of a[i] with b[i] for (N, 4) xyxy boxes a and b; kind is iou, giou, diou or ciou.

    Differentiable, for box losses (loss = 1 - aligned_iou). giou and diou come from torchvision's
    losses. iou and ciou are written here: torchvision has no aligned plain IoU, and its
    complete_box_iou_loss divides width by height with no eps, so a box of zero height (common among
    a detector's first predictions) gives NaN gradients; here eps is added to heights, as YOLO does.
    """
    _check(kind, IOU_KINDS, "IoU kind")
    if kind == "giou":
        return 1 - tv.generalized_box_iou_loss(a, b, eps=eps)
    if kind == "diou":
        return 1 - tv.distance_box_iou_loss(a, b, eps=eps)
    wa, ha = a[..., 2] - a[..., 0], a[..., 3] - a[..., 1] + eps
    wb, hb = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1] + eps
    inter_w = (torch.min(a[..., 2], b[..., 2]) - torch.max(a[..., 0], b[..., 0])).clamp(min=0)
    inter_h = (torch.min(a[..., 3], b[..., 3]) - torch.max(a[..., 1], b[..., 1])).clamp(min=0)
    inter = inter_w * inter_h
    iou = inter / (wa * ha + wb * hb - inter + eps)
    if kind == "iou":
        return iou
    # CIoU = IoU - centre distance^2 / enclosing diagonal^2 - alpha * v (Zheng et al. 2020)
    diou = 1 - tv.distance_box_iou_loss(a, b, eps=eps)
    v = (4 / math.pi**2) * (torch.atan(wb / hb) - torch.atan(wa / ha)) ** 2  # aspect-ratio mismatch
    with torch.no_grad():  # alpha is a weight, not optimised (as in the paper)
        alpha = v / (1 - iou + v + eps)
    return diou - alpha * v


def nms(boxes: Tensor, scores: Tensor, labels: Tensor | None, iou_threshold: float, max_det: int,
        class_agnostic: bool = False) -> Tensor:
    """Indices (K,) of the boxes kept, highest score first, K <= max_det.

    boxes (N, 4) xyxy, scores (N,), labels (N,) int. A box is dropped when its IoU with a kept
    higher-scoring box of the same class (of any class if class_agnostic or labels is None) is
    above iou_threshold (strictly, as torchvision).
    """
    if class_agnostic or labels is None:
        keep = tv.nms(boxes, scores, iou_threshold)
    else:
        keep = tv.batched_nms(boxes, scores, labels, iou_threshold)
    return keep[:max_det]
