"""The one in-memory form of detection data, whatever the format it was read from (YOLO, COCO, VOC).

Boxes are always absolute pixel corners x1, y1, x2, y2 (float32) with x2 = x1 + width, as COCO's
x, y, w, h without any "+1"; labels index `classes`.

Two kinds of object are left out of the score, by different rules (foveal/metrics/detection.py):
`crowd` regions (COCO's iscrowd) absorb any number of detections lying mostly inside them, while a
`difficult` object (VOC's flag) is matched by plain IoU like any object, and the detection matched
to it counts neither way. `areas` keeps COCO's own `area` per object (for COCO data the segment's
area, not w * h), which COCO's small/medium/large ranges are judged by.

Pose data is detection data whose objects also carry `keypoints` (N, K, 3): x, y in pixels and COCO's
visibility v (0 not labelled, 1 labelled but hidden, 2 visible; x = y = 0 where v = 0), with the data's
KeypointLayout naming the K joints, the limbs drawn between them and the left/right swap of a flip.
"""

from dataclasses import dataclass, field
from pathlib import Path

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
    segments: list | None = None  # per object, COCO segmentation in pixels: polygons [[x1, y1, ...], ...] or RLE
    difficult: np.ndarray = field(default_factory=lambda: np.zeros((0,), bool))  # (N,) VOC difficult; empty: none
    areas: np.ndarray | None = None  # (N,) float64 COCO `area` per object; None: the box area (formats without one)
    image_id: int | str | None = None  # the source's id of the image (COCO's); None: none (see result_image_id)
    keypoints: np.ndarray | None = None  # (N, K, 3) float32 x, y pixels and visibility 0/1/2, for pose data


@dataclass
class KeypointLayout:
    """What the K keypoints of pose data are: names, the limbs between them, their mirror images."""

    names: list[str]  # K joint names, e.g. COCO's "nose", "left_eye", ...
    skeleton: list[tuple[int, int]] = field(default_factory=list)  # limbs as 0-based joint pairs, drawn as lines
    flip_idx: list[int] | None = None  # joint k becomes joint flip_idx[k] under a horizontal flip; None: itself
    sigmas: list[float] | None = None  # OKS per-joint sigmas (COCO's for its 17 joints); None: the metric's rule

    @property
    def count(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict:
        """JSON-ready (what trained weights record)."""
        return {"names": list(self.names), "skeleton": [list(pair) for pair in self.skeleton],
                "flip_idx": self.flip_idx, "sigmas": self.sigmas}

    @classmethod
    def from_dict(cls, saved: dict) -> "KeypointLayout":
        return cls(saved["names"], [tuple(pair) for pair in saved["skeleton"]], saved["flip_idx"], saved["sigmas"])


@dataclass
class DetectionData:
    classes: list[str]
    splits: dict[str, list[ImageAnnotations]]  # "train", "val", maybe "test"
    category_ids: list[int] | None = None  # the source's id of each class (COCO's category ids); None: the index
    keypoints: KeypointLayout | None = None  # pose data: its joints (every item then has `keypoints`)


def result_image_id(item: ImageAnnotations, index: int) -> int | str:
    """The image_id a COCO results file gives `item`: the source's own id (COCO data), else the file's stem
    (a number when it is one, as in COCO's file names and Ultralytics' results), else the index."""
    if item.image_id is not None:
        return item.image_id
    stem = Path(item.image).stem
    return int(stem) if stem.isdigit() else stem or index


def unscored(item: ImageAnnotations) -> np.ndarray:
    """(N,) bool: the objects evaluation leaves out, crowd or difficult (a format that marks only one kind
    writes both as that one)."""
    count = len(item.labels)
    crowd = item.crowd if len(item.crowd) else np.zeros(count, bool)
    return crowd | (item.difficult if len(item.difficult) else np.zeros(count, bool))


def instance_masks(item: ImageAnnotations) -> np.ndarray:
    """(N, H, W) bool masks of an image's objects: its `masks`, or its `segments` rasterised as COCO does."""
    if item.masks is not None:
        return item.masks
    if item.segments is None:
        raise ValueError(f"{item.image or 'image'}: has no instance masks (boxes only)")
    if not item.segments:
        return np.zeros((0, item.height, item.width), bool)
    from faster_coco_eval.core import mask as coco_mask  # COCO's own rasteriser: masks equal the evaluator's

    rles = [coco_mask.merge(coco_mask.frPyObjects(s, item.height, item.width)) if isinstance(s, list)
            else coco_mask.frPyObjects(s, item.height, item.width) if isinstance(s.get("counts"), list) else s
            for s in item.segments]
    return np.moveaxis(coco_mask.decode(rles), -1, 0).astype(bool)
