"""COCO detection JSON: `images` (id, file_name, width, height), `annotations` (id, image_id,
category_id, bbox = x, y, w, h in pixels, iscrowd, area) and `categories` (id, name).

Category ids may be any integers: the classes are the category names in the order of sorted id
(COCO's 80 classes with ids 1..90 become 0..79), written back with ids 1..C. `file_name` is relative
to the images folder; width and height are taken from the JSON (read from the image when absent).
Each annotation's `area` is kept (ImageAnnotations.areas; the box's area where it is absent): COCO's
small/medium/large ranges use it, and in COCO's own files it is the segment's area, not w * h.

With segments=True each annotation's `segmentation` is read too, as COCO stores it in pixels:
polygons [[x1, y1, x2, y2, ...], ...] or run-length encoding {size: [height, width], counts}, the
counts a list (uncompressed) or COCO's compressed string (crowd regions). It is checked without
drawing it: polygons of numbers with x, y pairs, run lengths that cover the image exactly. Polygons
of one or two points (COCO 2017 has a few) have no area and are dropped, as detectron2 does.

With keypoints=True (person_keypoints files) the categories that have keypoints name them in
`keypoints` (all such categories the same K names) and give `skeleton`, limbs as 1-based joint
pairs (0-based in the KeypointLayout); flip_idx comes from the names (left_* <-> right_*), and
COCO's 17 joints get COCO's OKS sigmas. Each annotation's `keypoints` is x, y, v for each of the K
joints (v: 0 not labelled, 1 hidden, 2 visible); `num_keypoints`, when given, must count the
joints with v > 0, since COCOeval ignores the objects whose num_keypoints is 0. An annotation
without keypoints (a crowd region, or another category) has K unlabelled joints.
"""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import FovealError
from ...files import read_text, write_json
from ..detection import DetectionData, ImageAnnotations, KeypointLayout, instance_masks, unscored
from ..keypoints import named_layout
from .common import (BOX_SLACK_PIXELS, SPLITS, BadLabel, Problems, absolute, annotated, fit_box, image_size,
                     keep_readable, keypoint_rows, number, numbers,
                     place_image)


def find_coco_sets(folder: Path, prefix: str = "instances_") -> dict[str, tuple[Path, Path]]:
    """{split: (json, images folder)} from FOLDER/<split>.json + FOLDER/<split>/ (as write_coco writes)
    or the COCO download layout FOLDER/annotations/<prefix><split><year>.json + FOLDER/<split><year>/
    (prefix "person_keypoints_" for the keypoint files)."""
    sets = {split: (folder / f"{split}.json", folder / split) for split in SPLITS
            if (folder / f"{split}.json").is_file()}
    for path in sorted((folder / "annotations").glob(f"{prefix}*.json")):
        name = path.stem.removeprefix(prefix)
        split = next((s for s in SPLITS if name.startswith(s)), None)
        if split and split not in sets:
            sets[split] = (path, folder / name)
    if not sets:
        raise FovealError(f"{folder}: no train.json/val.json/test.json, nor annotations/{prefix}*.json")
    return sets


def read_coco(sets: dict[str, tuple[Path, Path]], strict: bool = True, segments: bool = False,
              keypoints: bool = False) -> DetectionData:
    """{split: (annotations JSON, images folder)} as one DetectionData; every JSON must have the same categories.

    segments=True fills ImageAnnotations.segments, and an annotation without a segmentation is a bad label.
    keypoints=True fills ImageAnnotations.keypoints and DetectionData.keypoints (the module docstring).
    """
    problems, splits, categories, first, layout = Problems(strict), {}, None, None, None
    for split, (json_path, images) in sets.items():
        json_path, images = absolute(json_path), absolute(images)
        document = _load(json_path, images)
        found = _categories(document, json_path)
        joints = _keypoint_layout(document, json_path) if keypoints else None
        if categories is None:
            categories, first, layout = found, json_path, joints
        elif found != categories or joints != layout:
            raise FovealError(f"{json_path}: its categories differ from those of {first}")
        index = {category_id: i for i, (category_id, _) in enumerate(categories)}
        splits[split] = _read_set(document, json_path, images, index, problems, segments, layout)
    splits = keep_readable(splits, problems, absolute(next(iter(sets.values()))[0]).parent)  # beside the JSON
    problems.warn()
    return DetectionData([name for _, name in categories], splits, [category_id for category_id, _ in categories],
                         layout[0] if layout else None)


def _load(path: Path, images: Path) -> dict:
    if not path.is_file():
        raise FovealError(f"{path}: no such file")
    if not images.is_dir():
        raise FovealError(f"{images}: no such folder (the images of {path})")
    try:
        document = json.loads(read_text(path))  # read_text: a byte-order mark (json refuses one) is dropped
    except json.JSONDecodeError as e:
        raise FovealError(f"{path}:{e.lineno}: malformed JSON ({e.msg})") from None
    if not isinstance(document, dict) or not all(isinstance(document.get(key), list)
                                                  for key in ("images", "annotations", "categories")):
        raise FovealError(f"{path}: not COCO detection JSON (it needs lists 'images', 'annotations' and 'categories')")
    return document


def _categories(document: dict, path: Path) -> list[tuple[int, str]]:
    try:
        categories = sorted((int(c["id"]), str(c["name"])) for c in document["categories"])
    except (KeyError, TypeError, ValueError):
        raise FovealError(f"{path}: every category needs an integer 'id' and a 'name'") from None
    ids = [category_id for category_id, _ in categories]
    if not ids:
        raise FovealError(f"{path}: 'categories' is empty")
    for a, b in zip(ids, ids[1:]):
        if a == b:
            raise FovealError(f"{path}: category id {a} appears twice")
    return categories


def _keypoint_layout(document: dict, path: Path) -> tuple[KeypointLayout, set[int]]:
    """(the joints the categories name, the ids of the categories that name them); FovealError if none does,
    or two name different joints, or a skeleton pair is not two joint numbers 1..K."""
    layout, named, first = None, set(), None
    for category in document["categories"]:
        names = category.get("keypoints")
        if names is None:
            continue
        place = f"{path}: category id {category.get('id')} ({category.get('name')})"
        if not isinstance(names, list) or not names or not all(isinstance(name, str) for name in names):
            raise FovealError(f"{place}: 'keypoints' must be a list of joint names, found {names!r}")
        if len(set(names)) != len(names):
            raise FovealError(f"{place}: 'keypoints' names a joint twice")
        skeleton = category.get("skeleton") or []
        for pair in skeleton if isinstance(skeleton, list) else [skeleton]:
            if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(k, int) for k in pair)):
                raise FovealError(f"{place}: skeleton entries must be pairs of joint numbers [a, b], found {pair!r}")
            if not all(1 <= k <= len(names) for k in pair):
                raise FovealError(f"{place}: skeleton pair {pair} is out of range: COCO numbers the "
                                  f"{len(names)} joints from 1 to {len(names)}")
        found = named_layout(names, [(a - 1, b - 1) for a, b in skeleton])
        if layout is not None and found != layout:
            raise FovealError(f"{place}: its keypoints or skeleton differ from those of category id {first}; "
                              f"one pose data set has one joint list")
        if layout is None:
            first = category.get("id")
        layout = found
        named.add(category.get("id"))
    if layout is None:
        raise FovealError(f"{path}: no category names keypoints (a COCO keypoints file gives its person category "
                          f"'keypoints': [joint names] and 'skeleton')")
    return layout, named


def _keypoints(annotation: dict, layout: KeypointLayout, height: int, width: int, place: str) -> np.ndarray:
    """(K, 3) float32 keypoints of one annotation, checked (see the module docstring)."""
    value, count = annotation.get("keypoints"), layout.count
    if value is None or value == []:
        value = [0] * 3 * count
    if not isinstance(value, list) or len(value) != 3 * count:
        found = f"{len(value)} values" if isinstance(value, list) else type(value).__name__
        raise BadLabel(f"{place}: keypoints must be x, y, v for each of the {count} joints: {3 * count} numbers, "
                       f"found {found}")
    rows = keypoint_rows(numbers(value, f"{place}: keypoints").reshape(count, 3),
                         layout.names, height, width, BOX_SLACK_PIXELS, place)
    labelled, stated = int((rows[:, 2] > 0).sum()), annotation.get("num_keypoints")
    if stated is not None and stated != labelled:
        raise BadLabel(f"{place}: num_keypoints is {stated!r} but {labelled} joints have v > 0")
    return rows


def _read_set(document: dict, path: Path, images: Path, index: dict, problems: Problems, segments: bool,
              layout: tuple[KeypointLayout, set[int]] | None = None) -> list:
    """The images of one JSON in file order; an image with a bad annotation is skipped (reported).
    layout: (joints, the categories naming them) when keypoints are read."""
    entries, skipped = {}, set()  # image id -> [file, width, height, boxes, labels, crowd, segments or None, areas,
    #                                             keypoints]
    for k, entry in enumerate(document["images"]):
        image_id = entry.get("id") if isinstance(entry, dict) else None
        try:
            if not isinstance(image_id, int | str) or not isinstance(entry.get("file_name"), str):
                raise BadLabel(f"{path}: images[{k}] needs an 'id' and a 'file_name'")
            if image_id in entries:
                raise FovealError(f"{path}: image id {image_id} appears twice")
            file = images / entry["file_name"]
            if not file.is_file():
                raise BadLabel(f"{path}: image id {image_id}: {file} not found")
            width, height = entry.get("width"), entry.get("height")
            if not (isinstance(width, int | float) and isinstance(height, int | float) and width > 0 and height > 0):
                width, height = image_size(file)
            entries[image_id] = [file, int(width), int(height), [], [], [], [] if segments else None, [], []]
        except BadLabel as e:
            problems.add(str(e))
            skipped.add(image_id if isinstance(image_id, int | str) else None)
    for k, annotation in enumerate(document["annotations"]):
        annotation = annotation if isinstance(annotation, dict) else {}
        image_id, category_id = annotation.get("image_id"), annotation.get("category_id")
        image_id = image_id if isinstance(image_id, int | str) else repr(image_id)  # hashable
        place = f"{path}: annotation id {annotation.get('id', f'#{k}')}"
        if image_id in skipped:
            continue
        try:
            if image_id not in entries:
                raise BadLabel(f"{place}: unknown image_id {image_id!r}")
            _, width, height, boxes, labels, crowd, outlines, areas, joints = entries[image_id]
            if not isinstance(category_id, int) or category_id not in index:
                raise BadLabel(f"{place}: unknown category_id {category_id!r}")
            if layout is not None and annotation.get("keypoints") and category_id not in layout[1]:
                raise FovealError(f"{place}: has keypoints but its category id {category_id} names none "
                                  f"(give that category a 'keypoints' list of joint names)")
            bbox = annotation.get("bbox")
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise BadLabel(f"{place}: bbox must be [x, y, width, height], found {bbox!r}")
            x, y, w, h = (number(v, place) for v in bbox)
            box = fit_box([x, y, x + w, y + h], height, width, BOX_SLACK_PIXELS, place)
            area = annotation.get("area")
            area = (box[2] - box[0]) * (box[3] - box[1]) if area is None else number(area, f"{place}: area")
            if area < 0:
                raise BadLabel(f"{place}: area {area:g} is negative")
            if outlines is not None:
                outlines.append(segmentation(annotation.get("segmentation"), height, width, place))
            if layout is not None:
                joints.append(_keypoints(annotation, layout[0], height, width, place))
            boxes.append(box)
            labels.append(index[category_id])
            crowd.append(bool(annotation.get("iscrowd", 0)))
            areas.append(area)
        except BadLabel as e:
            problems.add(str(e))
            if entries.pop(image_id, None) is not None:
                skipped.add(image_id)
    count = layout[0].count if layout else 0
    return [replace(annotated(*entry[:-2]), areas=np.array(entry[-2], np.float64), image_id=image_id,
                    keypoints=np.array(entry[-1], np.float32).reshape(-1, count, 3) if layout else None)
            for image_id, entry in entries.items()]


def segmentation(value, height: int, width: int, place: str) -> list | dict:
    """An annotation's `segmentation` checked (see the module docstring), BadLabel naming `place` if malformed."""
    if value is None or value == []:
        raise BadLabel(f"{place}: no segmentation (instance masks need polygons or RLE)")
    if isinstance(value, list):
        return _polygons(value, place)
    if isinstance(value, dict):
        return _run_lengths(value, height, width, place)
    raise BadLabel(f"{place}: segmentation must be polygons [[x1, y1, x2, y2, ...], ...] or RLE "
                   f"{{size, counts}}, found {type(value).__name__}")


def _polygons(value: list, place: str) -> list:
    kept = []
    for k, polygon in enumerate(value):
        try:
            coordinates = np.asarray(polygon)
        except ValueError:  # ragged nesting
            coordinates = np.zeros(0, object)
        if (coordinates.ndim != 1 or coordinates.dtype.kind not in "iuf" or len(coordinates) % 2
                or not np.isfinite(coordinates).all()):
            raise BadLabel(f"{place}: segmentation polygon {k} is not a list of x, y pixel pairs")
        if len(coordinates) >= 6:
            kept.append(polygon)  # JSON's own list: no copy of the largest part of a COCO file
    if not kept:
        raise BadLabel(f"{place}: segmentation has no polygon of 3 or more points")
    return kept


def _run_lengths(value: dict, height: int, width: int, place: str) -> dict:
    size, counts = value.get("size"), value.get("counts")
    if size != [height, width]:
        raise BadLabel(f"{place}: segmentation RLE size {size!r} is not the image's [height, width] = "
                       f"[{height}, {width}]")
    if isinstance(counts, str):
        runs = rle_counts(counts)
    elif isinstance(counts, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in counts):
        runs = counts
    else:
        runs = None
    if runs is None or (runs and min(runs) < 0) or sum(runs) != width * height:
        raise BadLabel(f"{place}: segmentation RLE counts are malformed or do not cover the {width}x{height} image "
                       f"(a list of run lengths or COCO's compressed string)")
    return {"size": [height, width], "counts": counts}


def rle_counts(text: str) -> list[int] | None:
    """Run lengths of COCO's compressed RLE string (the format of pycocotools' maskApi.c), None if malformed.

    Each count is little-endian groups of 5 bits, one character each (value + 48); bit 0x20 says
    another group follows, bit 0x10 of the last group is the sign. From the fourth count on, the
    string holds the difference to the count two places back (runs of 0s and of 1s vary slowly).
    """
    counts, value, shift = [], 0, 0
    for character in text:
        group = ord(character) - 48
        if not 0 <= group < 64:
            return None
        value |= (group & 0x1F) << shift
        shift += 5
        if group & 0x20:
            continue
        if group & 0x10:
            value -= 1 << shift  # sign-extend
        counts.append(value + (counts[-2] if len(counts) > 2 else 0))
        value, shift = 0, 0
    return None if shift else counts


def write_coco(data: DetectionData, folder, link: bool = True) -> Path:
    """folder/<split>.json (category ids 1..C, image ids 1..N) with the images in folder/<split>/.

    Objects with outlines (`segments`, or `masks` written as compressed RLE) keep them. `area` is the
    one read from COCO (ImageAnnotations.areas), else the mask's pixel count, as COCO's own files
    have, else the box area. COCO has no difficult flag: difficult objects are written as iscrowd,
    as mmdetection's VOC-to-COCO converter does, which every COCO tool leaves out of the score.
    Pose data (data.keypoints) is written as COCO keypoints: every category names the joints and
    gives the skeleton (1-based), every annotation its keypoints and num_keypoints.
    """
    folder = Path(folder)
    categories = [{"id": i + 1, "name": name, "supercategory": ""} for i, name in enumerate(data.classes)]
    if data.keypoints is not None:
        for category in categories:
            category.update(keypoints=list(data.keypoints.names),
                            skeleton=[[a + 1, b + 1] for a, b in data.keypoints.skeleton])
    for split, items in data.splits.items():
        taken, images, annotations = set(), [], []
        (folder / split).mkdir(parents=True, exist_ok=True)
        for image_id, item in enumerate(items, 1):
            name = place_image(item, image_id, folder / split, taken, link)
            images.append({"id": image_id, "file_name": name, "width": item.width, "height": item.height})
            outlines, ignored = _outlines(item), unscored(item)
            for k, ((x1, y1, x2, y2), label) in enumerate(zip(item.boxes.tolist(), item.labels.tolist())):
                w, h = x2 - x1, y2 - y1
                annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": label + 1,
                                    "bbox": [round(v, 4) for v in (x1, y1, w, h)], "area": round(w * h, 4),
                                    "iscrowd": int(ignored[k])})
                if outlines is not None:
                    annotations[-1].update(segmentation=outlines[0][k], area=outlines[1][k])
                if item.areas is not None:  # the area read from COCO: a round trip keeps its size ranges
                    annotations[-1]["area"] = float(item.areas[k])
                if data.keypoints is not None:
                    joints = item.keypoints[k]
                    annotations[-1].update(keypoints=[round(v, 4) for v in joints.ravel().tolist()],
                                           num_keypoints=int((joints[:, 2] > 0).sum()))
        document = {"images": images, "annotations": annotations, "categories": categories}
        write_json(folder / f"{split}.json", document, indent=None)
    return folder


def _outlines(item: ImageAnnotations) -> tuple[list, list[int]] | None:
    """(COCO segmentation, mask area in pixels) per object of `item`, or None when it has boxes only."""
    if item.segments is None and item.masks is None:
        return None
    from faster_coco_eval.core import mask as coco_mask

    masks = instance_masks(item)  # (N, H, W) bool
    areas = masks.sum(axis=(1, 2)).tolist()
    if item.segments is not None:
        return item.segments, areas
    encoded = [coco_mask.encode(np.asfortranarray(mask, np.uint8)) for mask in masks]
    return [{"size": rle["size"], "counts": rle["counts"].decode("ascii")} for rle in encoded], areas
