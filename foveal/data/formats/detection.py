"""Detection data sets on disk (YOLO, COCO, Pascal VOC): the `data=` string, readers, writers, conversion.
Segmentation data (masks.py) reads image + mask folders, and COCO and YOLO with segments=True.

The `data=` forms. When only one set is given, a fixed-seed `val_fraction` of its images becomes "val".

    path/to/data.yaml, or a folder holding data.yaml          YOLO (yolo.py); `yolo:` in front is allowed
    coco:ANNOTATIONS.json[,IMAGES/]                          one COCO set; IMAGES/ defaults to the JSON's folder
    coco:TRAIN.json[,IMAGES/];VAL.json[,IMAGES/][;TEST...]   train;val[;test] sets (quote the ';' in a shell)
    coco:FOLDER/                                             FOLDER/{train,val,test}.json with images in
                                                             FOLDER/<split>/ (as `convert` writes), or
                                                             FOLDER/annotations/instances_<split>*.json
    voc:ANNOTATIONS/,IMAGES/[;VAL_ANNOTATIONS/,VAL_IMAGES/]  folders of XML files and of images, train;val
    voc:ROOT/                                                ROOT/Annotations/ + ROOT/JPEGImages/, split by
                                                             ROOT/ImageSets/Main/{train,val,test}.txt if there
    masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/]            black-and-white masks, one box per blob (mask_boxes.py)
    masks:ROOT/, or ROOT/ holding images/ + masks/           ROOT/ alone: the layout Kvasir-SEG comes in

Bad labels raise a one-line FovealError naming the file and line (or annotation id, or XML object).
With strict=False an image with any bad label is skipped whole, since keeping it with an object
removed would teach the model that the object is background; one warning gives the count and the
first places. An image that does not decode, or decodes to another size than its annotations give,
is a bad label too (keep_readable; the decoding is cached in the data set's .foveal-image-check.json).
Text files (labels, lists, YAML, JSON) may have Windows line ends and a UTF-8 byte-order mark.
Problems with the data set as a whole (no data.yaml, a missing split folder, malformed JSON or YAML,
inconsistent class lists) are errors either way.
"""

import math
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FovealError
from ...files import atomic_write, read_text  # noqa: F401  (read_text: for the readers here)
from ..detection import DetectionData, ImageAnnotations, unscored
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


def fit_box(box, width: int, height: int, slack: float, place: str) -> list[float]:
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


from . import coco, voc, yolo  # noqa: E402  (after the helpers above, which these modules import)

FORMS = ("path/to/data.yaml, a folder holding data.yaml, coco:ANNOTATIONS.json[,IMAGES/][;VAL.json[,IMAGES/]], "
         "coco:FOLDER/, voc:ANNOTATIONS/,IMAGES/[;VAL_ANNOTATIONS/,VAL_IMAGES/], voc:VOC_ROOT/, "
         "masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/] or a folder holding images/ + masks/ (black-and-white masks)")
WRITERS = {"yolo": (yolo.write_yolo, "YOLO"), "coco": (coco.write_coco, "COCO"), "voc": (voc.write_voc, "VOC")}


def load_detection_data(data: str, strict: bool = True, val_fraction: float = 0.2,
                        segments: bool = False) -> DetectionData:
    """The detection data set a `data=` string names (forms in the module docstring), split into train/val."""
    detection = read_detection_data(data, strict, segments)
    detection.splits = split_off_val(detection.splits, val_fraction)
    return detection


def read_detection_data(data: str, strict: bool = True, segments: bool = False) -> DetectionData:
    """As load_detection_data, but the splits as the files give them (one set is "train").

    segments=True also reads each object's outline (COCO polygons or RLE, YOLO polygons) into
    ImageAnnotations.segments; an object without one is then a bad label. VOC XML has none.
    """
    kind, _, rest = str(data).partition(":")
    if kind == "masks" or kind not in ("yolo", "coco", "voc") and masks.is_mask_folder(data):
        if segments:
            raise FovealError(f"data={data}: boxes read from masks carry no outlines (segments=true)")
        return mask_boxes.read_mask_boxes(rest if kind == "masks" else str(data), data, strict)
    if kind not in ("yolo", "coco", "voc"):  # a plain path (also C:\... on Windows)
        kind, rest = "yolo", str(data)
    texts = [[p.strip() for p in s.split(",")] for s in rest.split(";") if s.strip()]
    if not texts or len(texts) > len(SPLITS) or not all(all(parts) for parts in texts):
        raise FovealError(f"data={data}: not a detection data set; use {FORMS}")
    sets = [[absolute(p) for p in parts] for parts in texts]
    single = sets[0][0] if len(sets) == 1 and len(sets[0]) == 1 else None
    if kind == "yolo" and single is not None:
        path = single / "data.yaml" if single.is_dir() else single
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            return yolo.read_yolo(path, strict, segments)
        why = "no data.yaml in that folder" if single.is_dir() else "no such .yaml file"
        raise FovealError(f"data={data}: {why}; use {FORMS}")
    if kind == "coco" and single is not None and single.is_dir():
        return coco.read_coco(coco.find_coco_sets(single), strict, segments)
    if kind == "coco" and all(len(parts) <= 2 for parts in sets):
        return coco.read_coco({split: (parts[0], parts[-1] if len(parts) == 2 else parts[0].parent)
                               for split, parts in zip(SPLITS, sets)}, strict, segments)
    if kind == "voc" and segments:
        raise FovealError(f"data={data}: VOC XML files hold boxes only; for masks use COCO, YOLO polygons or "
                          f"masks:IMAGES/,MASKS/")
    if kind == "voc" and single is not None:
        return voc.read_voc(voc.find_voc_sets(single), strict=strict)
    if kind == "voc" and all(len(parts) == 2 for parts in sets):
        return voc.read_voc({split: voc.folder_set(*parts) for split, parts in zip(SPLITS, sets)}, strict=strict)
    raise FovealError(f"data={data}: not a detection data set; use {FORMS}")


def convert(src: str, dst: str, strict: bool = True, val_fraction: float = 0.0, link: bool = True,
            segments: bool = False) -> str:
    """Write the data set `src` names (any data= form) as dst = yolo:FOLDER, coco:FOLDER or voc:FOLDER.

    Splits are kept as they are (one set stays "train") unless val_fraction > 0. Images are hard-linked
    when possible (link=False copies them). segments=True keeps the objects' outlines (COCO polygons
    or RLE, YOLO polygons), which every object must then have; only COCO can write them. Returns a
    one-line summary.
    """
    kind, _, folder = dst.partition(":")
    if kind not in WRITERS or not folder.strip():
        raise FovealError(f"dst={dst}: use yolo:FOLDER, coco:FOLDER or voc:FOLDER")
    if segments and kind != "coco":
        raise FovealError(f"dst={dst}: segments=true needs coco:FOLDER, the one format written here with outlines")
    out = absolute(folder)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FovealError(f"dst={dst}: {out} already exists and is not an empty folder; name a new one")
    data = load_detection_data(src, strict, val_fraction, segments)
    write, name = WRITERS[kind]
    write(data, out, link=link)
    items = [item for split in data.splits.values() for item in split]
    boxes = sum(len(item.labels) for item in items)
    dropped = sum(int(unscored(item).sum()) for item in items) if kind == "yolo" else 0
    note = f" ({dropped} crowd/difficult boxes left out: YOLO cannot mark them)" if dropped else ""
    return (f"wrote {len(items)} images, {boxes - dropped} boxes, {len(data.classes)} classes "
            f"as {name} to {folder.strip()}{note}")


from .masks import load_segmentation_data  # noqa: E402, F401  (re-exported; masks.py uses the readers above)
from . import mask_boxes, masks  # noqa: E402  (mask_boxes reads through masks.py)
