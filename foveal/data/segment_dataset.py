"""Segmentation Datasets: letterboxed (and in training, augmented) images with masks that move with the pixels.

Masks are resampled with nearest neighbour, so a pixel keeps a class that exists (never a blend of
two), and the border a warp or letterbox adds is IGNORE_INDEX (semantic) or background (instance).
Randomness follows torch's RNG, which the engine seeds per epoch, so resumed runs repeat exactly.
"""

from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import masks_to_boxes

from .detect_dataset import read_rgb
from ..ops.letterbox import PAD_VALUE, letterbox, letterbox_mask
from .detect_transforms import hsv_jitter, mosaic_image, mosaic_matrices, random_affine_matrix
from .detection import ImageAnnotations, instance_masks
from .segmentation import IGNORE_INDEX, MaskedImage, read_labels

MIN_INSTANCE_PIXELS = 4  # an object warped or cropped to fewer pixels is dropped from the targets


@dataclass
class SegmentAugment:
    """Training augmentation; its defaults are SegmentConfig's (tasks/segment/common.py refers to them)."""

    scale: float = 0.25  # random scale 1 +- scale
    translate: float = 0.1  # random shift, fraction of the image size
    degrees: float = 0.0
    hflip: float = 0.5
    vflip: float = 0.0  # useful where up and down mean nothing (microscopy, endoscopy, aerial)
    hsv_h: float = 0.015
    hsv_s: float = 0.5
    hsv_v: float = 0.3
    mosaic: float = 0.0  # instance data: probability of a 4-image mosaic (masks move with the pixels)


def warp_masks(masks: np.ndarray, matrix: np.ndarray, size: int, fill: int) -> np.ndarray:
    """(M, H, W) uint8 masks through a (2, 3) affine matrix into size x size, nearest neighbour (classes stay)."""
    if not len(masks):
        return np.zeros((0, size, size), np.uint8)
    return np.stack([cv2.warpAffine(m, matrix, (size, size), flags=cv2.INTER_NEAREST, borderValue=fill) for m in masks])


def augment_pair(image: np.ndarray, masks: np.ndarray, size: int, aug: SegmentAugment, rng, fill: int):
    """Warp image (H, W, 3) and masks (M, H, W) uint8 together into a size x size square; flip; colour."""
    matrix = random_affine_matrix(*image.shape[:2], size, rng, aug.scale, aug.translate, aug.degrees)
    image = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    return flip_and_colour(image, warp_masks(masks, matrix, size, fill), aug, rng)


def mosaic_instances(samples: list, size: int, aug: SegmentAugment, rng) -> tuple:
    """Four (image, masks, labels) samples as one size x size mosaic (detect's geometry), each object's mask
    moved with its tile's pixels; flipped and coloured as augment_pair does. Returns (image, masks, labels)."""
    matrices = mosaic_matrices([image.shape[:2] for image, _, _ in samples], size, rng, aug.scale, aug.translate,
                               aug.degrees)
    image = mosaic_image([image for image, _, _ in samples], matrices, size)
    masks = np.concatenate([warp_masks(m, matrix, size, 0) for (_, m, _), matrix in zip(samples, matrices)])
    labels = np.concatenate([labels for _, _, labels in samples])
    return (*flip_and_colour(image, masks, aug, rng), labels)


def flip_and_colour(image: np.ndarray, masks: np.ndarray, aug: SegmentAugment, rng):
    """The random flips (image and masks together) and colour jitter that end every augmentation."""
    if rng.random() < aug.hflip:
        image, masks = image[:, ::-1], masks[:, :, ::-1]
    if rng.random() < aug.vflip:
        image, masks = image[::-1], masks[:, ::-1]
    image = hsv_jitter(np.ascontiguousarray(image), rng, aug.hsv_h, aug.hsv_s, aug.hsv_v)
    return image, np.ascontiguousarray(masks)


def place_pair(image: np.ndarray, masks: np.ndarray, size: int, augment: SegmentAugment | None, fill: int):
    """(image, masks (M, size, size), scale, pad) of image (H, W, 3) and masks (M, H, W) uint8:
    letterboxed when augment is None (scale and pad map predictions back), else randomly warped,
    with randomness that follows torch's seeding (scale 1 and pad 0 then, as nothing maps back)."""
    if augment is not None:
        rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
        return (*augment_pair(image, masks, size, augment, rng, fill), 1.0, (0, 0))
    image, scale, pad = letterbox(image, size)
    placed = [letterbox_mask(m, size, scale, pad, fill) for m in masks]
    return image, np.stack(placed) if placed else np.zeros((0, size, size), np.uint8), scale, pad


def _to_tensor(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).contiguous()


class SemanticDataset(Dataset):
    """Sample i: (uint8 (3, S, S) image, int64 (S, S) class mask, meta) where meta holds `index`,
    `scale` and `pad` to map a prediction back to the original image (p_original = (p - pad) / scale).
    Unreadable images were dropped (or refused) when the data was read."""

    def __init__(self, items: list[MaskedImage], num_classes: int, imgsz: int, augment: SegmentAugment | None = None,
                 binary_masks: bool = False):
        self.items, self.num_classes, self.imgsz, self.augment = items, num_classes, imgsz, augment
        self.binary_masks = binary_masks

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i: int):
        item = self.items[i]
        image = read_rgb(item)
        labels = read_labels(item, self.num_classes, self.binary_masks)
        image, masks, scale, pad = place_pair(image, labels[None], self.imgsz, self.augment, IGNORE_INDEX)
        meta = {"index": i, "scale": scale, "pad": pad}
        return _to_tensor(image), torch.from_numpy(masks[0].astype(np.int64)), meta


def semantic_collate(samples):
    """(uint8 (B, 3, S, S) images, int64 (B, S, S) masks, list of B meta dicts)."""
    images, masks, metas = zip(*samples)
    return torch.stack(images), torch.stack(masks), list(metas)


class InstanceDataset(Dataset):
    """Sample i: (uint8 (3, S, S) image, target) for the instance models: target holds boxes (N, 4) xyxy and
    labels (N,) recomputed from masks (N, S, S) uint8 after augmentation (exact, unlike warped boxes),
    plus `index`, `scale` and `pad` as SemanticDataset's meta. Crowd objects are left out of training.
    With augment.mosaic, a share of the samples are mosaics of four images (in the epochs before
    `mosaic_epochs`: close_mosaic)."""

    def __init__(self, items: list[ImageAnnotations], imgsz: int, augment: SegmentAugment | None = None,
                 mosaic_epochs: int | None = None):
        self.items, self.imgsz, self.augment = items, imgsz, augment
        self.mosaic_epochs, self.mosaic_enabled = mosaic_epochs, True

    def set_epoch(self, epoch: int):
        """The engine says which epoch (0-based) the next items are for (engine/loaders.py)."""
        self.mosaic_enabled = self.mosaic_epochs is None or epoch < self.mosaic_epochs

    def __len__(self):
        return len(self.items)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(image, masks (M, H, W) uint8, labels (M,)) of item i, its crowd objects left out."""
        item = self.items[i]
        keep = ~item.crowd if len(item.crowd) else np.ones(len(item.labels), bool)
        return read_rgb(item), instance_masks(item)[keep].astype(np.uint8), item.labels[keep]

    def __getitem__(self, i: int):
        aug = self.augment
        image, masks, labels = self.load(i)
        if aug is not None and aug.mosaic and self.mosaic_enabled:  # (no draw otherwise: runs without it repeat)
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))
            if rng.random() < aug.mosaic:
                picks = [(image, masks, labels), *(self.load(int(k)) for k in rng.integers(0, len(self), 3))]
                image, masks, labels = mosaic_instances(picks, self.imgsz, aug, rng)
            else:
                image, masks = augment_pair(image, masks, self.imgsz, aug, rng, 0)
            scale, pad = 1.0, (0, 0)
        else:
            image, masks, scale, pad = place_pair(image, masks, self.imgsz, aug, 0)
        visible = masks.sum(axis=(1, 2), dtype=np.int64) >= MIN_INSTANCE_PIXELS  # (reshape fails on 0 masks)
        masks, labels = masks[visible], labels[visible]
        masks = torch.from_numpy(masks)
        boxes = masks_to_boxes(masks) + torch.tensor([0.0, 0.0, 1.0, 1.0])  # x2 = max_x + 1, as all foveal boxes
        target = {"boxes": boxes, "labels": torch.from_numpy(labels.astype(np.int64)),
                  "masks": masks, "index": i, "scale": scale,
                  "pad": torch.tensor(pad, dtype=torch.float32)}
        return _to_tensor(image), target

