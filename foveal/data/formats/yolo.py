"""YOLO data sets: a data.yaml, images, and one text line per object: `class cx cy w h` (detection)
or `class x1 y1 x2 y2 x3 y3 ...` (segmentation: a polygon of 3 or more points).

data.yaml keys: `path`, the root (relative to the yaml file's folder, which is also the default);
`train`, `val` and optional `test`, each a folder of images, a .txt list of image paths (relative
lines are relative to the .txt file's folder) or a list of those, relative to the root; `names`, a
list or {id: name}; `nc`, optional but must agree. The labels of .../images/.../x.jpg are in
.../labels/.../x.txt (the last `images` folder of the path becomes `labels`; with none, beside the
image), with cx, cy, w, h normalised to [0, 1] by the image size after EXIF rotation, as Ultralytics
does; polygon points are normalised alike. An image without a label file has no objects. Boxes and
polygons may overshoot the image by 1% of its larger side (export tools' rounding); they are clipped
to it, as Ultralytics clips them. Farther out, or empty once clipped, is a bad label.

A detection read takes a polygon's bounding box, as Ultralytics does; a segmentation read
(segments=True) keeps the polygon, in pixels, as the object's COCO-style segment, and a box line
there is a bad label (it has no outline to learn).

What each image's header and label file give (its size, boxes and polygons, or the bad label's message)
is kept in .foveal-label-cache.json beside the yaml file, as Ultralytics keeps its labels.cache: a second
read opens neither while the size and modification time of both image and label file are unchanged.

Pose data (Ultralytics' YOLO-pose) has `kpt_shape: [K, 2]` or `[K, 3]` in data.yaml, and each line is
`class cx cy w h` followed by K points `x y` or `x y v`, normalised as the box is (v: 0 not labelled,
1 hidden, 2 visible; with 2 numbers a point is visible when inside the image and not (0, 0), else
unlabelled). Optional keys: `flip_idx`, the mirror image of each keypoint (a permutation of 0..K-1,
itself for a middle joint); `kpt_names`, K names (or Ultralytics' {class: [names]}); `skeleton`, limbs
as 0-based pairs. Without kpt_names the keypoints are called "0".."K-1", except that 17 keypoints are
COCO's person joints (names, skeleton, OKS sigmas), as Ultralytics scores any 17-keypoint data with
COCO's sigmas. Without flip_idx it comes from the names (left_* <-> right_*), or is None when they
have no left and right. A detection read of pose data reads the boxes and leaves the keypoints.
"""

import os
from pathlib import Path

import numpy as np
import yaml

from ...errors import FovealError
from ...files import read_text, write_text
from ..detection import DetectionData, ImageAnnotations, KeypointLayout, unscored
from ..images import file_stamp, list_images, read_check_cache, write_check_cache
from ..keypoints import COCO_KEYPOINT_NAMES, COCO_SKELETON, named_layout
from .common import (SPLITS, BadLabel, Problems, absolute, annotated, fit_box, image_size, keep_readable,
                     keypoint_rows, number, numbers, place_image)

SLACK = 0.01  # normalised overshoot that is clipped: export tools round by far less (6 px at 640), wrong labels more
LABELLING_TOOL_FILES = {"classes.txt"}  # labelImg writes its class list among the labels
LABEL_CACHE = ".foveal-label-cache.json"  # beside data.yaml and images.CHECK_CACHE, in the same form
LABEL_CACHE_VERSION = 2  # 2: keypoints


def label_path(image: Path) -> Path:
    """.../images/a/b.jpg -> .../labels/a/b.txt (beside the image when no folder is called `images`)."""
    parts = list(image.parts)
    if "images" in parts[:-1]:
        parts[len(parts) - 2 - parts[:-1][::-1].index("images")] = "labels"
    return Path(*parts).with_suffix(".txt")


def read_yolo(yaml_path, strict: bool = True, segments: bool = False, keypoints: bool = False) -> DetectionData:
    """The data set a YOLO data.yaml describes, with the splits it names; segments=True reads polygons,
    keypoints=True the keypoints of pose data (kpt_shape in data.yaml; the module docstring)."""
    yaml_path = absolute(yaml_path)
    config = read_yaml(yaml_path)
    classes = class_names(config, yaml_path)
    if keypoints and config.get("kpt_shape") is None:
        raise FovealError(f"{yaml_path}: no kpt_shape: pose data gives kpt_shape: [K, 2] or [K, 3] "
                          f"(K keypoints of x, y or x, y, visibility)")
    layout, dims = keypoint_layout(config, yaml_path) if config.get("kpt_shape") is not None else (None, 0)
    root = yaml_path.parent / os.path.expanduser(str(config.get("path") or ""))
    if config.get("train") is None:
        raise FovealError(f"{yaml_path}: no 'train' key (a folder of images or a .txt list of them)")
    problems, splits = Problems(strict), {}
    cache = yaml_path.parent / LABEL_CACHE
    entries = read_check_cache(cache, LABEL_CACHE_VERSION)
    before = dict(entries)  # shares the entries' values, so comparing it afterwards is cheap
    try:
        for split in SPLITS:
            if config.get(split) is not None:
                images = _split_images(config[split], root, f"{yaml_path}: {split}", problems)
                splits[split] = [item for image in images for item in
                                 [_read_image(image, len(classes), problems, segments, entries, layout, dims)]
                                 if item is not None]
    finally:  # also when strict stops at a bad label: what was read before it need not be read again
        if entries != before:
            write_check_cache(cache, entries, LABEL_CACHE_VERSION)
    splits = keep_readable(splits, problems, yaml_path.parent)
    problems.warn()
    if not keypoints:
        for item in (item for items in splits.values() for item in items):
            item.keypoints = None
    return DetectionData(classes, splits, keypoints=layout if keypoints else None)


def keypoint_layout(config: dict, path: Path) -> tuple[KeypointLayout, int]:
    """(the KeypointLayout, 2 or 3 numbers per point) of pose data.yaml keys (the module docstring)."""
    shape = config.get("kpt_shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(type(n) is int for n in shape)
            and shape[0] >= 1 and shape[1] in (2, 3)):
        raise FovealError(f"{path}: kpt_shape must be [K, 2] or [K, 3] (K keypoints of x, y or x, y, "
                          f"visibility), found {shape!r}")
    count, dims = shape
    names = config.get("kpt_names")
    if isinstance(names, dict) and names:  # Ultralytics: {class id: names}; one pose data set has one joint list
        lists = list(names.values())
        if any(other != lists[0] for other in lists):
            raise FovealError(f"{path}: kpt_names gives classes different keypoint names; one list serves all")
        names = lists[0]
    if names is None:
        names = COCO_KEYPOINT_NAMES if count == len(COCO_KEYPOINT_NAMES) else [str(k) for k in range(count)]
    if not isinstance(names, list | tuple) or len(names) != count:
        raise FovealError(f"{path}: kpt_names must list the {count} keypoint names of kpt_shape, found {names!r}")
    flip = config.get("flip_idx")
    if flip is not None:
        if not isinstance(flip, list) or not all(type(k) is int for k in flip):
            raise FovealError(f"{path}: flip_idx must be a list of {count} keypoint indices, found {flip!r}")
        if len(flip) != count:
            raise FovealError(f"{path}: flip_idx has {len(flip)} entries but kpt_shape says {count} keypoints; "
                              f"give each keypoint the index of its mirror image (its own for a middle joint)")
        if sorted(flip) != list(range(count)):
            missing = sorted(set(range(count)) - set(flip))
            raise FovealError(f"{path}: flip_idx {flip} is not a permutation of 0..{count - 1}: every keypoint must "
                              f"appear once (missing {', '.join(map(str, missing))})")
    default = COCO_SKELETON if tuple(names) == COCO_KEYPOINT_NAMES else []
    skeleton = config.get("skeleton", default)
    for pair in skeleton if isinstance(skeleton, list | tuple) else [skeleton]:
        if not (isinstance(pair, list | tuple) and len(pair) == 2 and all(type(k) is int for k in pair)
                and all(0 <= k < count for k in pair)):
            raise FovealError(f"{path}: skeleton: {pair!r} is not a pair of keypoint indices 0..{count - 1}")
    return named_layout(names, skeleton, flip), dims


def read_yaml(path: Path) -> dict:
    if not path.is_file():
        raise FovealError(f"{path}: no such file")
    try:
        config = yaml.safe_load(read_text(path))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 1}" if mark else ""
        raise FovealError(f"{path}{line}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(config, dict):
        raise FovealError(f"{path}: expected a mapping with train, val and names")
    return config


def class_names(config: dict, path: Path) -> list[str]:
    names = config.get("names")
    if isinstance(names, dict):
        try:
            names = {int(k): v for k, v in names.items()}
        except (TypeError, ValueError):
            raise FovealError(f"{path}: names: the ids must be integers 0..{len(names) - 1}") from None
        if sorted(names) != list(range(len(names))):
            raise FovealError(f"{path}: names: the ids must be 0..{len(names) - 1}, found {sorted(names)}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise FovealError(f"{path}: names: give the class names as a list or as {{id: name}}")
    if config.get("nc") is not None and config["nc"] != len(names):
        raise FovealError(f"{path}: nc is {config['nc']} but names lists {len(names)} classes")
    return [str(name) for name in names]


def _split_images(entry, root: Path, where: str, problems: Problems) -> list[Path]:
    """Image paths of one split; a missing folder or list is an error, a missing listed image a bad label."""
    images = []
    for item in entry if isinstance(entry, list) else [entry]:
        path = absolute(root / str(item))
        if path.is_dir():
            found = list_images(path)
            _report_stray_labels(path, found, problems)
        elif path.is_file() and path.suffix == ".txt":
            found = []
            for line_number, line in enumerate(read_text(path).splitlines(), 1):
                image = absolute(path.parent / line.strip()) if line.strip() else None
                if image is not None and not image.is_file():
                    problems.add(f"{path}:{line_number}: image {image} not found")
                elif image is not None:
                    found.append(image)
        else:
            raise FovealError(f"{where}: {path} is neither a folder of images nor a .txt list of them")
        images += found
    return images


def _report_stray_labels(folder: Path, images: list[Path], problems: Problems):
    """Label files under the labels folder of `folder` that belong to no image (usually a renamed image)."""
    labels = label_path(folder / "x").parent
    if labels == folder or not labels.is_dir():
        return
    expected = {label_path(image) for image in images}
    for path in sorted(labels.rglob("*.txt")):
        if path not in expected and path.name not in LABELLING_TOOL_FILES:
            problems.add(f"{path}: label file without an image (none called {path.stem}.* under {folder})")


def _read_image(image: Path, class_count: int, problems: Problems, segments: bool, cache: dict,
                layout: KeypointLayout | None = None, dims: int = 0) -> ImageAnnotations | None:
    """One image and its label file, or None (reported) when the image or a label line is bad.

    cache: {image path: [image stamp, label stamp, class_count, segments, kpt_shape, what _parse_image gave]};
    an entry is used while all five agree (a label file added, changed or removed changes its stamp)."""
    shape = [layout.count, dims] if layout else None
    stamp = [file_stamp(image), file_stamp(label_path(image)), class_count, segments, shape]
    entry = cache.get(str(image))
    if not isinstance(entry, list) or len(entry) != 6 or entry[:5] != stamp:  # not a 6-list: a damaged cache
        entry = cache[str(image)] = [*stamp, _parse_image(image, class_count, segments, layout, dims)]
    if isinstance(entry[5], str):
        problems.add(entry[5])
        return None
    width, height, boxes, labels, polygons, keypoints = entry[5]
    item = annotated(image, width, height, boxes, labels, [False] * len(labels), polygons)
    if layout is not None:
        item.keypoints = np.array(keypoints, np.float32).reshape(-1, layout.count, 3)
    return item


def _parse_image(image: Path, class_count: int, segments: bool, layout: KeypointLayout | None = None,
                 dims: int = 0) -> list | str:
    """[width, height, boxes, labels, polygons or None, keypoints or None] in pixels (JSON-ready), or the bad
    label's message."""
    path = label_path(image)
    try:
        width, height = image_size(image)
        lines = read_text(path, BadLabel).splitlines() if path.is_file() else []
        boxes, labels, polygons, keypoints = [], [], [], []
        for line_number, line in enumerate(lines, 1):
            fields, place = line.split(), f"{path}:{line_number}"
            if not fields:
                continue
            if layout is not None:
                expected = 5 + layout.count * dims
                if len(fields) != expected:
                    point = "x y" if dims == 2 else "x y v"
                    raise BadLabel(f"{place}: expected {expected} fields, 'class cx cy w h' then '{point}' for each of "
                                   f"the {layout.count} keypoints of kpt_shape [{layout.count}, {dims}], found "
                                   f"{len(fields)}")
                values = numbers(fields[1:], place)
                keypoints.append(_keypoints(values[4:], layout, dims, height, width, place).ravel().tolist())
                fields = fields[:5]
            is_polygon = len(fields) >= 7 and len(fields) % 2 == 1
            if not is_polygon and (segments or len(fields) != 5):
                raise BadLabel(f"{place}: {_field_count_problem(len(fields), segments)}")
            label = number(fields[0], place)
            if label != int(label) or not 0 <= label < class_count:
                raise BadLabel(f"{place}: class {fields[0]} is not one of 0..{class_count - 1}")
            values = numbers(fields[1:], place)
            if is_polygon:
                box, polygon = _polygon(values, height, width)
                polygons.append([polygon])
            else:
                cx, cy, w, h = values.tolist()
                box = [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]
            boxes.append(fit_box(box, height, width, SLACK * max(width, height), place))
            labels.append(int(label))
    except BadLabel as e:
        return str(e)
    return [width, height, boxes, labels, polygons if segments else None, keypoints if layout else None]


def _keypoints(values: np.ndarray, layout: KeypointLayout, dims: int, height: int, width: int,
               place: str) -> np.ndarray:
    """(K, 3) float32 pixel keypoints from a pose line's normalised points (K * dims values)."""
    points = values.reshape(layout.count, dims)
    if dims == 2:  # no visibility given: a point in the image is visible, (0, 0) or outside is unlabelled
        inside = (points >= 0).all(1) & (points <= 1).all(1) & (points != 0).any(1)
        points = np.concatenate([points * inside[:, None], 2.0 * inside[:, None]], 1)
    pixels = points * (width, height, 1)
    return keypoint_rows(pixels, layout.names, height, width, SLACK * max(width, height), place)


def _field_count_problem(count: int, segments: bool) -> str:
    polygon = "a polygon 'class x1 y1 x2 y2 x3 y3 ...' (an odd count of 7 or more fields)"
    if not segments:
        return f"expected 5 fields 'class cx cy w h', found {count} (or {polygon})"
    if count == 5:
        return f"a box 'class cx cy w h', but segmentation needs the object's outline: {polygon}"
    return f"expected {polygon}, found {count} fields"


def _polygon(values: np.ndarray, height: int, width: int) -> tuple[list[float], list[float]]:
    """Normalised x1, y1, x2, y2, ... -> (its bounding box, the polygon clipped to the image), in pixels."""
    points = values.reshape(-1, 2) * (width, height)  # (P, 2) x, y
    box = [*points.min(0).tolist(), *points.max(0).tolist()]  # checked and clipped by fit_box
    return box, np.clip(points, 0, (width, height)).ravel().tolist()


def write_yolo(data: DetectionData, folder, link: bool = True) -> Path:
    """folder/images/<split>/, folder/labels/<split>/*.txt and folder/data.yaml (returned).

    YOLO has no crowd or difficult flag, so those boxes are left out, as Ultralytics' converters do.
    data.yaml has no `path`: readers then take the yaml's folder as the root, Ultralytics included.
    Pose data (data.keypoints) is written as YOLO-pose: kpt_shape [K, 3], flip_idx (when known),
    kpt_names and skeleton in data.yaml, and x y v of each keypoint after the box.
    """
    folder = Path(folder)
    for split, items in data.splits.items():
        taken, labels = set(), folder / "labels" / split
        labels.mkdir(parents=True, exist_ok=True)
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        for index, item in enumerate(items):
            name = place_image(item, index, folder / "images" / split, taken, link)
            lines = []
            for k, ((x1, y1, x2, y2), label, left_out) in enumerate(zip(item.boxes.tolist(), item.labels.tolist(),
                                                                        unscored(item).tolist())):
                if not left_out:
                    cx, cy = (x1 + x2) / 2 / item.width, (y1 + y2) / 2 / item.height
                    w, h = (x2 - x1) / item.width, (y2 - y1) / item.height
                    points = ""
                    if data.keypoints is not None:
                        points = "".join(f" {x / item.width:.6f} {y / item.height:.6f} {v:g}"
                                         for x, y, v in item.keypoints[k].tolist())
                    lines.append(f"{label} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}{points}\n")
            write_text(labels / Path(name).with_suffix(".txt").name, "".join(lines))
    config = {split: f"images/{split}" for split in data.splits}
    config.update(nc=len(data.classes), names=list(data.classes))
    if data.keypoints is not None:
        layout = data.keypoints
        config.update(kpt_shape=[layout.count, 3], **({"flip_idx": list(layout.flip_idx)} if layout.flip_idx else {}),
                      kpt_names=list(layout.names), skeleton=[list(pair) for pair in layout.skeleton])
    yaml_path = folder / "data.yaml"
    write_text(yaml_path, yaml.safe_dump(config, sort_keys=False, allow_unicode=True))
    return yaml_path
