"""The detection Dataset: letterboxed (and in training, augmented) images with their boxes."""

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from ..ops.letterbox import letterbox, letterbox_shape
from .detect_transforms import flip_keypoints, hsv_jitter, horizontal_flip, mosaic, random_affine, warp_keypoints
from .detection import DetectionData, ImageAnnotations, unscored
from .images import read_pixels


@dataclass
class Augment:
    """Training augmentation; its defaults are DetectConfig's (tasks/detect/task.py refers to them)."""

    mosaic: float = 1.0  # probability of a 4-image mosaic
    scale: float = 0.5  # random scale 1 +- scale
    translate: float = 0.1  # random shift, fraction of the image size
    degrees: float = 0.0
    hflip: float = 0.5
    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4


def read_rgb(item) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of one annotated image (ImageAnnotations or MaskedImage), EXIF rotation
    applied as its boxes assume. Files were checked when the data was read (formats.common.keep_readable); one
    that no longer decodes is a FovealError naming it, never replaced by another image."""
    return item.pixels if item.pixels is not None else read_pixels(item.image)


class DetectionDataset(Dataset):
    """Sample i: (uint8 (3, S, S) image, target dict). The target holds `boxes` (N, 4) xyxy and
    `labels` (N,) in the letterboxed frame, plus `index`, `scale` and `pad` to map predictions back
    to the original image (p_original = (p - pad) / scale). Unreadable images were dropped (or refused)
    when the data was read, so every item here has pixels.

    Without augmentation and with `stride`, images are letterboxed only to multiples of the stride
    (S' x S'' <= S x S); shape_batches() then groups images of one shape into each batch.

    Where load() gives keypoints (PoseDataset), they move with the pixels and the target holds them too.
    """

    flip_idx: list[int] | None = None  # what a horizontal flip renames each joint to (PoseDataset)

    def __init__(self, items: list[ImageAnnotations], imgsz: int, augment: Augment | None = None, stride: int = 0,
                 mosaic_epochs: int | None = None):
        self.items, self.imgsz, self.augment, self.stride = items, imgsz, augment, stride
        self.mosaic_epochs = mosaic_epochs  # mosaic in the epochs before this one (close_mosaic); None: all
        self.mosaic_enabled = True

    def set_epoch(self, epoch: int):
        """The engine says which epoch (0-based) the next items are for (engine/loaders.py)."""
        self.mosaic_enabled = self.mosaic_epochs is None or epoch < self.mosaic_epochs

    def __len__(self):
        return len(self.items)

    def load(self, i: int):
        """(image, boxes, labels, keypoints) of item i, keypoints None (detection); crowd and VOC difficult
        objects are left out of training (as Ultralytics and mmdetection do: a box that is not to be found
        should not be learned either)."""
        item = self.items[i]
        image = read_rgb(item)
        keep = ~unscored(item)
        return image, item.boxes[keep].astype(np.float32), item.labels[keep], None

    def __getitem__(self, i: int):
        size, aug = self.imgsz, self.augment
        scale, pad = 1.0, (0, 0)
        if aug is None:
            image, boxes, labels, keypoints = self.load(i)
            image, scale, pad = letterbox(image, size, self.stride)
            boxes = boxes * scale + np.array([*pad, *pad], np.float32)
            if keypoints is not None:
                placed = np.array([[scale, 0, pad[0]], [0, scale, pad[1]]])  # p * scale + pad
                keypoints = warp_keypoints(keypoints, placed, *image.shape[:2])
        else:
            rng = np.random.default_rng(int(torch.randint(0, 2**62, ())))  # follows torch's seeding
            if self.mosaic_enabled and rng.random() < aug.mosaic:
                picks = [i, *rng.integers(0, len(self), 3)]
                image, boxes, labels, keypoints = mosaic([self.load(int(k)) for k in picks], size, rng, aug.scale,
                                                         aug.translate, aug.degrees)
            else:
                image, boxes, labels, keypoints = random_affine(*self.load(i), size, rng, aug.scale, aug.translate,
                                                                aug.degrees)
            image = hsv_jitter(image, rng, aug.hsv_h, aug.hsv_s, aug.hsv_v)
            if rng.random() < aug.hflip:
                if keypoints is not None:
                    keypoints = flip_keypoints(keypoints, image.shape[1], self.flip_idx)
                image, boxes = horizontal_flip(image, boxes)
        target = {"boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)).reshape(-1, 4),
                  "labels": torch.from_numpy(np.asarray(labels, np.int64)).reshape(-1),
                  "index": i, "scale": scale, "pad": torch.tensor(pad, dtype=torch.float32)}
        if keypoints is not None:
            target["keypoints"] = torch.from_numpy(np.ascontiguousarray(keypoints, np.float32))
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), target

    def shape_batches(self, batch: int) -> list[list[int]]:
        """Indices in batches of at most `batch` whose letterboxed shapes agree (from the sizes the data
        recorded, no image read): each image is then scored at its own shape, whatever the batch size."""
        groups = defaultdict(list)
        for i, item in enumerate(self.items):
            groups[letterbox_shape(item.height, item.width, self.imgsz, self.stride)].append(i)
        return [indices[k:k + batch] for indices in groups.values() for k in range(0, len(indices), batch)]


def collate(samples):
    """(uint8 (B, 3, S, S) images, list of B target dicts)."""
    images, targets = zip(*samples)
    return torch.stack(images), list(targets)


def shapes_detection_data(imgsz: int = 320, n_train: int = 1000, n_val: int = 200) -> DetectionData:
    """foveal's synthetic scenes, generated the same way every time, with exact boxes and masks."""
    from .synthetic import SHAPE_CLASSES, make_scene_set

    def split(n, seed):
        return [ImageAnnotations("", imgsz, imgsz, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
                for s in make_scene_set(n, imgsz, seed)]

    return DetectionData(list(SHAPE_CLASSES), {"train": split(n_train, 11), "val": split(n_val, 12),
                                                "test": split(n_val, 13)})
