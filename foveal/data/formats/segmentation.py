"""Segmentation data sets on disk: the segmentation `data=` string, for semantic and instance models.

The `data=` forms. When only one set is given, a fixed-seed `val_fraction` of its images becomes "val".

    masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/[;TEST...]]   folders of images and of index masks
    masks:ROOT/                       ROOT/images/{train,val,test}/ + ROOT/masks/{train,val,test}/,
                                      or ROOT/images/ + ROOT/masks/ as one set
    ROOT/                             the same folders without `masks:`, for black-and-white masks
                                      (as Kvasir-SEG comes): read as with binary_masks=true;
                                      for instance models each blob of a black-and-white mask is one object
    coco:..., path/to/data.yaml       COCO polygons or RLE, YOLO polygons (forms as for detection)
    shapes, polyps                    foveal's synthetic scenes (polyps: endoscopy frames) with exact masks

Instance models need per-object annotations (COCO or YOLO polygons); semantic models read those too,
painted into one mask (background 0, class k as k + 1). What a mask must be: masks.py.
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FovealError
from ..detection import DetectionData
from ..images import list_images
from ..polyps import polyps_segmentation_data
from ..segmentation import SegmentationData, semantic_from_instances, shapes_segmentation_data
from .common import absolute, split_off_val
from .detection import read_detection_data
from .mask_boxes import read_mask_boxes
from .masks import FORMS, is_mask_folder, read_mask_folders

KINDS = ("semantic", "instance")


def load_segmentation_data(data: str, kind: str, classes: str = "", strict: bool = True, val_fraction: float = 0.2,
                           binary_masks: bool = False) -> SegmentationData | DetectionData:
    """The data set a segmentation `data=` string names (forms in the module docstring), split into train/val.

    kind "semantic" gives a SegmentationData; kind "instance" a DetectionData whose items have
    `segments` (or `masks`) for every object. classes: a class list file for mask folders.
    binary_masks: masks are black and white (e.g. 0/255 JPEGs); a pixel over 127 is class 1.
    """
    if kind not in KINDS:
        raise FovealError(f"kind={kind}: use one of {', '.join(KINDS)}")
    if str(data).strip() == "shapes":
        return shapes_segmentation_data(instances=kind == "instance")
    if str(data).strip() == "polyps":
        return polyps_segmentation_data(instances=kind == "instance")
    form, _, rest = str(data).partition(":")
    if is_mask_folder(data):
        if not _looks_black_and_white(absolute(data) / "masks"):
            raise FovealError(f"data={data}: its masks hold class indices, and a plain folder is for black-and-white "
                              f"masks; a folder of images and masks is read as masks:{data}; use {FORMS}")
        form, rest, binary_masks = "masks", str(data), True
    if form == "masks" and kind == "instance":  # one object per blob of black-and-white masks (Kvasir-SEG's)
        if classes:
            raise FovealError(f"classes={classes}: instance models read black-and-white masks, one class, named by "
                              f"a classes.txt beside them")
        result = read_mask_boxes(rest, data, strict, outlines=True)
    elif form == "masks":
        result = read_mask_folders(rest, data, classes, strict, binary_masks)
    else:
        if classes:
            raise FovealError(f"classes={classes}: only for masks: folders; COCO and YOLO data name their classes")
        if binary_masks:
            raise FovealError("binary_masks=true: only for masks: folders; COCO and YOLO data have outlines")
        _check_annotation_source(data)
        instances = read_detection_data(data, strict, segments=True)
        result = instances if kind == "instance" else semantic_from_instances(instances)
    result.splits = split_off_val(result.splits, val_fraction)
    return result


def _looks_black_and_white(masks: Path, sample: int = 8) -> bool:
    """Whether the first masks under `masks` are black and white rather than class indices: more of their
    non-zero pixels over 127 than under (JPEG noise leaves a few grey ones at the edges; class indices are
    all small but for the ignore value 255). Unreadable masks are left to the reader to report."""
    dark = bright = 0
    for path in list_images(masks)[:sample]:
        try:
            with Image.open(path) as image:
                values = np.asarray(image.convert("L"))
        except (OSError, SyntaxError, ValueError):
            continue
        dark += int(np.count_nonzero((values > 0) & (values < 128)))
        bright += int(np.count_nonzero(values >= 128))
    return bright >= dark


def _check_annotation_source(data: str):
    """A segmentation-worded error for what is neither COCO nor a YOLO data.yaml (detection's would list VOC)."""
    form, _, rest = str(data).partition(":")
    if form in ("coco", "voc"):  # the detection reader words these (VOC: boxes only)
        return
    path = absolute(rest if form == "yolo" else data)
    if path.is_dir() and (path / "data.yaml").is_file() or path.is_file() and path.suffix in (".yaml", ".yml"):
        return
    hint = f"; a folder of images and masks is read as masks:{data}" if (path / "masks").is_dir() else ""
    raise FovealError(f"data={data}: not a segmentation data set{hint}; use {FORMS}")
