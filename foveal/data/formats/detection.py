"""Detection data sets on disk (YOLO, COCO, Pascal VOC): the `data=` string, readers, writers, conversion.
Segmentation data (segmentation.py) reads image + mask folders, and COCO and YOLO with segments=True.

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

from ...errors import FovealError
from ..detection import DetectionData, unscored
from . import coco, mask_boxes, masks, voc, yolo
from .common import SPLITS, absolute, split_off_val


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


def read_detection_data(data: str, strict: bool = True, segments: bool = False,
                        keypoints: bool = False) -> DetectionData:
    """As load_detection_data, but the splits as the files give them (one set is "train").

    segments=True also reads each object's outline (COCO polygons or RLE, YOLO polygons) into
    ImageAnnotations.segments; an object without one is then a bad label. VOC XML has none.
    keypoints=True reads pose data (COCO keypoints, YOLO-pose; pose.py has the other pose forms):
    ImageAnnotations.keypoints and DetectionData.keypoints; coco:FOLDER/ then finds person_keypoints_*.json.
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
            return yolo.read_yolo(path, strict, segments, keypoints)
        why = "no data.yaml in that folder" if single.is_dir() else "no such .yaml file"
        raise FovealError(f"data={data}: {why}; use {FORMS}")
    if kind == "coco" and single is not None and single.is_dir():
        prefix = "person_keypoints_" if keypoints else "instances_"
        return coco.read_coco(coco.find_coco_sets(single, prefix), strict, segments, keypoints)
    if kind == "coco" and all(len(parts) <= 2 for parts in sets):
        return coco.read_coco({split: (parts[0], parts[-1] if len(parts) == 2 else parts[0].parent)
                               for split, parts in zip(SPLITS, sets)}, strict, segments, keypoints)
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

