"""The pose Dataset: detection's letterboxed (and in training, augmented) images and boxes, plus each object's
keypoints moved with the pixels (detect_transforms: warp_keypoints, flip_keypoints)."""

import numpy as np

from .detect_dataset import Augment, DetectionDataset
from .detection import ImageAnnotations, unscored


class PoseDataset(DetectionDataset):
    """Sample i: (uint8 (3, S, S) image, target): DetectionDataset's target plus `keypoints` (N, K, 3) float32,
    x, y in the same letterboxed or augmented frame as the boxes and v as the data's (0, 1, 2), one row per box.
    A joint that augmentation pushes out of the image is (0, 0, 0), as an unlabelled one. A horizontal flip
    renames the joints by `flip_idx` (KeypointLayout's: joint k takes joint flip_idx[k]'s values; None: no
    renaming), so that a left wrist stays a left wrist."""

    def __init__(self, items: list[ImageAnnotations], imgsz: int, augment: Augment | None = None, stride: int = 0,
                 mosaic_epochs: int | None = None, flip_idx: list[int] | None = None):
        super().__init__(items, imgsz, augment, stride, mosaic_epochs)
        self.flip_idx = None if flip_idx is None else list(flip_idx)
        counts = {item.keypoints.shape[1] for item in items if item.keypoints is not None}
        if len(counts) > 1:
            raise ValueError(f"items with different numbers of keypoints: {sorted(counts)}")
        # an image without keypoints (no objects, as some readers leave it) still yields (0, K, 3)
        self.num_keypoints = counts.pop() if counts else len(self.flip_idx or [])
        if self.flip_idx is not None and len(self.flip_idx) != self.num_keypoints:
            raise ValueError(f"flip_idx has {len(self.flip_idx)} joints, the keypoints {self.num_keypoints}")

    def load(self, i: int):
        """(image, boxes, labels, keypoints (N, K, 3) float32) of item i, its unscored objects left out as
        detection's are."""
        image, boxes, labels, _ = super().load(i)
        item = self.items[i]
        if item.keypoints is None:
            return image, boxes, labels, np.zeros((len(boxes), self.num_keypoints, 3), np.float32)
        return image, boxes, labels, item.keypoints[~unscored(item)].astype(np.float32)
