"""Segmentation data in memory: per-pixel class masks (semantic) or instance masks (DetectionData).

Semantic data is a SegmentationData: class names (index 0 is the background when there is one)
and, per split, MaskedImage items whose mask is an (H, W) uint8 index image in which
IGNORE_INDEX marks pixels that are neither trained on nor scored. Instance data is the detection
form (foveal/data/detection.py) with per-object masks or COCO segments; a semantic model trained on
instance data sees those instances painted into one index mask, background 0 and class k as k + 1.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import FovealError
from .detection import DetectionData, ImageAnnotations, instance_masks

IGNORE_INDEX = 255
BACKGROUND = "background"


@dataclass
class MaskedImage:
    image: str  # image file ("" when `pixels` holds the image)
    mask: str  # index-mask file ("" when `labels` or `instances` gives the mask)
    width: int
    height: int
    pixels: np.ndarray | None = None  # (H, W, 3) uint8
    labels: np.ndarray | None = None  # (H, W) uint8 class per pixel, IGNORE_INDEX = not scored
    instances: ImageAnnotations | None = None  # painted into a mask when read (instance sources)


@dataclass
class SegmentationData:
    classes: list[str]
    splits: dict[str, list[MaskedImage]]  # "train", "val", maybe "test"


def paint_instances(item: ImageAnnotations) -> np.ndarray:
    """(H, W) uint8: 0 background, label + 1 under each object's mask, later objects on top;
    crowd regions become IGNORE_INDEX, as COCO-derived semantic benchmarks leave them unscored."""
    semantic = np.zeros((item.height, item.width), np.uint8)
    crowd = item.crowd if len(item.crowd) else np.zeros(len(item.labels), bool)
    for mask, label, is_crowd in zip(instance_masks(item), item.labels, crowd):
        semantic[mask] = IGNORE_INDEX if is_crowd else label + 1
    return semantic


def semantic_from_instances(data: DetectionData) -> SegmentationData:
    """Instance annotations seen as semantic masks, with a background class in front."""
    if len(data.classes) + 1 >= IGNORE_INDEX:
        raise FovealError(f"data: {len(data.classes)} classes do not fit in 8-bit masks with a background")
    splits = {split: [MaskedImage(item.image, "", item.width, item.height, item.pixels, None, item)
                      for item in items] for split, items in data.splits.items()}
    return SegmentationData([BACKGROUND, *data.classes], splits)


def read_labels(item: MaskedImage, num_classes: int, binary: bool = False) -> np.ndarray:
    """(H, W) uint8 class mask of one item, checked: same size as its image, values < num_classes or IGNORE_INDEX.

    binary=True reads black-and-white masks (e.g. 0/255 JPEGs): a pixel over 127 is class 1.
    """
    if item.labels is not None:
        labels = item.labels
    elif item.instances is not None:
        labels = paint_instances(item.instances)
    else:
        labels = read_mask_file(Path(item.mask), binary)
    if labels.shape != (item.height, item.width):
        raise FovealError(f"{item.mask or item.image}: mask is {labels.shape[1]}x{labels.shape[0]} px but its image "
                          f"{item.image or '(in memory)'} is {item.width}x{item.height}")
    bad = (labels >= num_classes) & (labels != IGNORE_INDEX)
    if bad.any():
        raise FovealError(f"{item.mask or item.image}: mask value {int(labels[bad].max())} is not a class "
                          f"(0..{num_classes - 1}) nor the ignore value {IGNORE_INDEX}")
    return labels


def read_mask_file(path: Path, binary: bool = False) -> np.ndarray:
    """(H, W) uint8 from an index PNG, a palette PNG (its indices, not its colours) or a grey image."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            problem = mask_mode_problem(image.mode, binary)
            if problem:
                raise FovealError(f"{path}: {problem}")
            if binary:
                return (np.asarray(image.convert("L")) > 127).astype(np.uint8)
            labels = np.asarray(image)
    except FileNotFoundError:
        raise FovealError(f"{path}: mask file not found") from None
    except OSError as e:
        raise FovealError(f"{path}: not a readable mask image ({e})") from None
    if labels.max(initial=0) > 255:
        raise FovealError(f"{path}: mask value {int(labels.max())} does not fit 0..255")
    return labels.astype(np.uint8)


def mask_mode_problem(mode: str, binary: bool = False) -> str | None:
    """Why a mask image of this PIL mode cannot hold class indices, or None; the header tells the mode."""
    if binary:
        return None
    if mode in ("RGB", "RGBA"):
        return (f"mask is a colour ({mode}) image; save class indices as a grey or palette PNG "
                f"(or set binary_masks=true for black-and-white masks)")
    if mode not in ("P", "L", "1", "I;16", "I"):
        return f"mask mode {mode} is not an index image"
    return None


def shapes_segmentation_data(size: int = 128, n_train: int = 1000, n_val: int = 200,
                             instances: bool = False) -> SegmentationData | DetectionData:
    """foveal's synthetic scenes with exact masks: semantic (background + 6 shapes) or instances."""
    from .synthetic import SHAPE_CLASSES, make_scene_set

    def split(n, seed):
        # Objects of at least 26 px at 128: smaller, a hexagon and a circle differ by about a pixel.
        scenes = make_scene_set(n, size, seed, max_objects=5, min_scale=0.2)
        if instances:
            return [ImageAnnotations("", size, size, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image,
                                     s.masks) for s in scenes]
        return [MaskedImage("", "", size, size, s.image, s.semantic_mask()) for s in scenes]

    splits = {"train": split(n_train, 21), "val": split(n_val, 22), "test": split(n_val, 23)}
    if instances:
        return DetectionData(list(SHAPE_CLASSES), splits)
    return SegmentationData([BACKGROUND, *SHAPE_CLASSES], splits)
