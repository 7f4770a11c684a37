"""Detection boxes from black-and-white masks: Kvasir-SEG, CVC-ClinicDB and other image + mask folders.

    masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/]   or   masks:ROOT/   or   a folder holding images/ + masks/

The folders are paired and checked by the segmentation reader (masks.py). A mask pixel over 127 is
object (0/255 masks, JPEG noise included), and each 8-connected blob of object pixels is one box;
blobs under MIN_BLOB_PIXELS are specks (JPEG ringing, a stray brush stroke), not objects. There is one
class: the second name of classes.txt beside the masks (background first, as for segmentation), else
"foreground", the name segmentation gives the same masks.
"""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np

from ...errors import FovealError
from ..detection import DetectionData
from ..images import CHECK_THREADS
from ..segmentation import read_mask_file
from .common import annotated
from .masks import read_mask_folders

MIN_BLOB_PIXELS = 16


def mask_boxes(mask: np.ndarray, min_pixels: int = MIN_BLOB_PIXELS) -> np.ndarray:
    """(N, 4) float32 boxes x1, y1, x2, y2 (x2 = max_x + 1) of the 8-connected blobs of a (H, W) mask
    (non-zero = object), in the order OpenCV labels them (top to bottom); blobs of fewer than
    min_pixels pixels are left out."""
    count, _, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    stats = stats[1:]  # row 0 is the background
    stats = stats[stats[:, cv2.CC_STAT_AREA] >= min_pixels]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    return np.stack([x, y, x + stats[:, cv2.CC_STAT_WIDTH], y + stats[:, cv2.CC_STAT_HEIGHT]], 1).astype(np.float32)


def read_mask_boxes(text: str, data: str, strict: bool = True) -> DetectionData:
    """Detection data from image + mask folders: text is what follows `masks:` (or the folder holding
    images/ and masks/); splits as the folders give them. Every mask is read once, here."""
    masks = read_mask_folders(text, data, strict=strict, binary=True)
    splits = {}
    with ThreadPoolExecutor(CHECK_THREADS) as pool:  # decoding releases the GIL
        for split, items in masks.splits.items():
            boxes = pool.map(lambda item: mask_boxes(read_mask_file(Path(item.mask), binary=True)), items)
            splits[split] = [annotated(item.image, item.width, item.height, found, np.zeros(len(found)),
                                       np.zeros(len(found), bool)) for item, found in zip(items, boxes)]
    if not any(len(item.labels) for items in splits.values() for item in items):
        # class-index masks (values 1, 2, ...) land here: none of their pixels is over 127
        raise FovealError(f"data={data}: no object in any mask (a pixel over 127 is object); detection reads "
                          f"black-and-white masks (0/255), not class-index masks")
    return DetectionData([masks.classes[1]], splits)
