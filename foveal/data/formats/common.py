"""What the readers and writers of every data set format share: bad-label collection (BadLabel,
Problems), number and box checks, image sizes and decoding checks, placing images, the val split."""

import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FovealError
from ...files import atomic_write
from ..detection import ImageAnnotations
from ..images import CHECK_CACHE, check_images, image_size as displayed_size

SPLITS = ("train", "val", "test")
BOX_SLACK_PIXELS = 1.0  # COCO/VOC boxes may overshoot the image by this much; they are then clipped
SPLIT_SEED = 0


class BadLabel(Exception):
    """'place: what is wrong' for one label or image; with strict=False its image is skipped."""


class Problems:
    """Collects BadLabel messages of one read: raises on the first when strict, else warns once at the end."""

    def __init__(self, strict: bool):
        self.strict, self.found = strict, []

    def add(self, message: str):
        if self.strict:
            raise FovealError(f"{message} (strict=false skips it with a warning)") from None
        self.found.append(message)

    def warn(self):
        if self.found:
            first = "; ".join(self.found[:3]) + (" ..." if len(self.found) > 3 else "")
            warnings.warn(f"skipped {len(self.found)} bad label(s) or image(s): {first}", stacklevel=3)


def absolute(path) -> Path:
    """An absolute path (without resolving symlinks), so items stay valid when the cwd changes."""
    return Path(os.path.abspath(os.path.expanduser(str(path).strip())))


def number(text, place: str) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise BadLabel(f"{place}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise BadLabel(f"{place}: {text!r} is not a finite number")
    return value


def fit_box(box, height: int, width: int, slack: float, place: str) -> list[float]:
    """Pixel box x1, y1, x2, y2 clipped to the image; BadLabel if it overshoots by more than `slack` or is empty."""
    x1, y1, x2, y2 = box
    if x1 < -slack or y1 < -slack or x2 > width + slack or y2 > height + slack:
        shown = ", ".join(f"{v:g}" for v in box)
        raise BadLabel(f"{place}: box x1,y1,x2,y2 = {shown} px lies outside the {width}x{height} image")
    x1, x2 = min(max(x1, 0.0), width), min(max(x2, 0.0), width)
    y1, y2 = min(max(y1, 0.0), height), min(max(y2, 0.0), height)
    if x2 <= x1 or y2 <= y1:
        raise BadLabel(f"{place}: box has zero or negative size ({x2 - x1:g} x {y2 - y1:g} px)")
    return [x1, y1, x2, y2]


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed: EXIF orientations 5-8 (a quarter turn) swap the two.

    Annotation tools and Ultralytics label photos as displayed, and the Datasets read pixels with the
    EXIF rotation applied (images.read_pixels), so boxes must refer to the rotated size.
    """
    try:
        return displayed_size(path)
    except FovealError as e:
        raise BadLabel(str(e)) from None


def keep_readable(splits: dict[str, list], problems: Problems, root: Path) -> dict[str, list]:
    """The items (ImageAnnotations or MaskedImage) whose image decodes to the size their annotations
    give, and whose mask file (if any) decodes; each other item is a bad label. The decoding is cached
    in root/CHECK_CACHE (images.check_images). Items holding their pixels in memory need no check."""
    files = [Path(file) for items in splits.values() for item in items
             for file in (item.image, getattr(item, "mask", "")) if file]
    checked = check_images(files, root / CHECK_CACHE)
    kept = {split: [] for split in splits}
    for split, items in splits.items():
        for item in items:
            problem = _decode_problem(item, checked)
            if problem:
                problems.add(problem)
            else:
                kept[split].append(item)
    return kept


def _decode_problem(item, checked: dict) -> str | None:
    """Why item's files (checked: check_images' answer) cannot be used, or None."""
    image = checked.get(Path(item.image)) if item.image else None
    mask_file = getattr(item, "mask", "")
    mask = checked.get(Path(mask_file)) if mask_file else None
    if isinstance(image, str):
        return f"{item.image}: not a readable image ({image})"
    if isinstance(mask, str):
        return f"{mask_file}: not a readable mask image ({mask})"
    if image is not None and image != (item.width, item.height):  # boxes would land beside their objects
        return f"{item.image}: the image is {image[0]}x{image[1]} px but its annotations say {item.width}x{item.height}"
    return None


def annotated(image, width, height, boxes, labels, crowd, segments=None) -> ImageAnnotations:
    return ImageAnnotations(str(image), int(width), int(height), np.array(boxes, np.float32).reshape(-1, 4),
                            np.array(labels, np.int64).reshape(-1), np.array(crowd, bool).reshape(-1),
                            segments=segments)


def place_image(item: ImageAnnotations, index: int, folder: Path, taken: set, link: bool) -> str:
    """Hard-link (or copy, or save in-memory pixels of) item's image into `folder` under a file name
    whose stem is not yet in `taken` (label files are named by stem); returns that file name."""
    source = Path(item.image) if item.image else None
    stem, suffix = (source.stem, source.suffix) if source else (f"{index:06d}", ".png")
    name, k = stem, 1
    while name.lower() in taken:  # lower case: file systems that ignore case would collide too
        name, k = f"{stem}_{k}", k + 1
    taken.add(name.lower())
    target = folder / (name + suffix)
    folder.mkdir(parents=True, exist_ok=True)
    if source is None:
        atomic_write(target, lambda tmp: Image.fromarray(item.pixels).save(tmp, format=target.suffix.lstrip(".").upper()
                                                                          .replace("JPG", "JPEG")))
        return target.name
    try:
        if not link:
            raise OSError
        os.link(source, target)
    except OSError:  # asked to copy, or another device / a file system without hard links
        shutil.copyfile(source, target)
    return target.name


def split_off_val(splits: dict, fraction: float) -> dict:
    """A fixed-seed `fraction` of "train" becomes "val" when there is no "val" (at least one image each)."""
    items = splits.get("train", [])
    if "val" in splits or fraction <= 0 or len(items) < 2:
        return splits
    count = min(max(1, round(len(items) * fraction)), len(items) - 1)
    chosen = set(np.random.default_rng(SPLIT_SEED).permutation(len(items))[:count].tolist())
    return {**splits, "train": [x for i, x in enumerate(items) if i not in chosen],
            "val": [x for i, x in enumerate(items) if i in chosen]}


def keypoint_rows(values: np.ndarray, names: list[str], height: int, width: int, slack: float,
                  place: str) -> np.ndarray:
    """(K, 3) float32 x, y, v in pixels from `values` (K, 3) float64, checked: v is 0, 1 or 2, and a labelled
    point (v > 0) lies in the image but for `slack` pixels (then clipped to it); x = y = 0 where v = 0."""
    x, y, v = values.T
    bad_v = ~np.isin(v, (0, 1, 2))
    outside = (v > 0) & ((x < -slack) | (x > width + slack) | (y < -slack) | (y > height + slack))
    if bad_v.any():
        k = int(np.argmax(bad_v))
        raise BadLabel(f"{place}: keypoint {k} ({names[k]}) has visibility {v[k]:g}; use 0 (not labelled), "
                       f"1 (labelled, hidden) or 2 (visible)")
    if outside.any():
        k = int(np.argmax(outside))
        raise BadLabel(f"{place}: keypoint {k} ({names[k]}) at x, y = {x[k]:g}, {y[k]:g} px lies outside the "
                       f"{width}x{height} image")
    rows = values.astype(np.float32)
    rows[:, :2] = np.clip(rows[:, :2], 0, (width, height)) * (rows[:, 2:] > 0)
    return rows


def numbers(fields: list, place: str) -> np.ndarray:
    """The fields (text or JSON numbers) as float64; BadLabel naming the first that is not a finite number."""
    try:
        values = np.array(fields, np.float64)  # one call for a polygon's or a skeleton's many fields
    except (TypeError, ValueError):
        values = np.full(len(fields), np.nan)
    if values.shape != (len(fields),) or not np.isfinite(values).all():
        for field in fields:
            number(field, place)  # raises, naming the field
    return values
