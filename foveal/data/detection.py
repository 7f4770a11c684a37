"""The one in-memory form of detection data, whatever the format it was read from (YOLO, COCO, VOC).

Boxes are always absolute pixel corners x1, y1, x2, y2 (float32) with x2 = x1 + width, as COCO's
x, y, w, h without any "+1"; labels index `classes`.
"""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class ImageAnnotations:
    image: str  # path of the image file ("" when `pixels` holds the image, as for synthetic scenes)
    width: int
    height: int
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))  # (N, 4) xyxy pixels
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int64))  # (N,) class indices
    crowd: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))  # (N,) COCO iscrowd
    pixels: np.ndarray | None = None  # (H, W, 3) uint8 for in-memory images
    masks: np.ndarray | None = None  # (N, H, W) bool instance masks, when the source has them


@dataclass
class DetectionData:
    classes: list[str]
    splits: dict[str, list[ImageAnnotations]]  # "train", "val", maybe "test"
