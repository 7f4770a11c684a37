"""Detection boxes (and instances) from black-and-white masks: Kvasir-SEG, CVC-ClinicDB and other image + mask
folders.

    masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/]   or   masks:ROOT/   or   a folder holding images/ + masks/

The folders are paired and checked by the segmentation reader (masks.py). A mask pixel over 127 is
object (0/255 masks, JPEG noise included), and each 8-connected blob of object pixels is one box;
blobs under MIN_BLOB_PIXELS are specks (JPEG ringing, a stray brush stroke), not objects. There is one
class: the second name of classes.txt beside the masks (background first, as for segmentation), else
"foreground", the name segmentation gives the same masks. For instance segmentation each blob is also
an object's mask, kept as COCO's compressed RLE (a Kvasir-size set in a few MB, not one bool array per
object).
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


def mask_blobs(mask: np.ndarray, min_pixels: int = MIN_BLOB_PIXELS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(boxes (N, 4) float32 x1, y1, x2, y2 with x2 = max_x + 1, the (H, W) int32 blob label map, the N blobs'
    labels in it) of the 8-connected blobs of a (H, W) mask (non-zero = object), in the order OpenCV labels
    them (top to bottom); blobs of fewer than min_pixels pixels are left out."""
    _, blobs, stats, _ = cv2.connectedComponentsWithStats((mask > 0).astype(np.uint8), connectivity=8)
    kept = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_pixels) + 1  # row 0 is the background
    stats = stats[kept]
    x, y = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
    boxes = np.stack([x, y, x + stats[:, cv2.CC_STAT_WIDTH], y + stats[:, cv2.CC_STAT_HEIGHT]], 1).astype(np.float32)
    return boxes.reshape(-1, 4), blobs, kept


def mask_boxes(mask: np.ndarray, min_pixels: int = MIN_BLOB_PIXELS) -> np.ndarray:
    """(N, 4) float32 boxes of mask_blobs."""
    return mask_blobs(mask, min_pixels)[0]


def blob_outlines(mask: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """(boxes, each blob as COCO compressed RLE {size, counts (str)}) of a (H, W) mask's blobs."""
    from faster_coco_eval.core import mask as coco_mask  # COCO's own encoder: masks equal the evaluator's

    boxes, blobs, kept = mask_blobs(mask)
    rles = []
    for label in kept:
        rle = coco_mask.encode(np.asfortranarray(blobs == label, dtype=np.uint8))
        rles.append({"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")})
    return boxes, rles


def read_mask_boxes(text: str, data: str, strict: bool = True, outlines: bool = False) -> DetectionData:
    """Detection data from image + mask folders: text is what follows `masks:` (or the folder holding
    images/ and masks/); splits as the folders give them; with `outlines` each object's blob too (segments,
    for instance segmentation). Every mask is read once, here."""
    masks = read_mask_folders(text, data, strict=strict, binary=True)
    read = blob_outlines if outlines else lambda mask: (mask_boxes(mask), None)
    splits = {}
    with ThreadPoolExecutor(CHECK_THREADS) as pool:  # decoding releases the GIL
        for split, items in masks.splits.items():
            found = pool.map(lambda item: read(read_mask_file(Path(item.mask), binary=True)), items)
            splits[split] = [annotated(item.image, item.width, item.height, boxes, np.zeros(len(boxes)),
                                       np.zeros(len(boxes), bool), segments=segments)
                             for item, (boxes, segments) in zip(items, found)]
    if not any(len(item.labels) for items in splits.values() for item in items):
        # class-index masks (values 1, 2, ...) land here: none of their pixels is over 127
        raise FovealError(f"data={data}: no object in any mask (a pixel over 127 is object); boxes and instances "
                          f"are read from black-and-white masks (0/255), not class-index masks")
    return DetectionData([masks.classes[1]], splits)
