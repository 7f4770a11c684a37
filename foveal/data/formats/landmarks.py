"""Landmark folders: images of one object each (a face, a hand, an X-ray) and a CSV of its points.

Each CSV row is an image's file name (relative to the images folder) then x1, y1, x2, y2, ... in
pixels. A first row whose second field is not a number is a header naming the columns, as in
`image,left_eye_x,left_eye_y,nose_x,nose_y`: the landmark names are the x columns' names without
their `_x` (flip_idx then pairs left_* with right_*); without a header they are called "0".."K-1".
An empty x and y is a landmark not labelled (v = 0); every other landmark is visible (v = 2). The
one object of an image, class "object", has the box of its labelled landmarks padded by 10% of the
box's width and height on each side (at least one pixel), clipped to the image.
"""

import csv
from pathlib import Path

import numpy as np

from ...errors import FovealError
from ...files import read_text
from ..detection import DetectionData, ImageAnnotations
from ..keypoints import named_layout
from .common import BOX_SLACK_PIXELS, SPLITS, BadLabel, Problems, absolute, image_size, keep_readable, keypoint_rows

LANDMARK_CLASS = "object"
PADDING = 0.1  # of the landmarks' extent, on each side: the box holds the object around its points


def find_landmark_set(folder: Path) -> tuple[Path, Path] | None:
    """(images folder, CSV) of a folder holding images/ and one .csv file, or None."""
    tables = sorted(folder.glob("*.csv")) if folder.is_dir() else []
    if (folder / "images").is_dir() and len(tables) == 1:
        return folder / "images", tables[0]
    return None


def read_landmarks(sets: dict[str, tuple[Path, Path]], strict: bool = True) -> DetectionData:
    """{split: (images folder, CSV)} as pose data; every CSV must name the same landmarks."""
    problems, splits, layout, first = Problems(strict), {}, None, None
    for split, (images, table) in sets.items():
        images, table = absolute(images), absolute(table)
        if not images.is_dir():
            raise FovealError(f"{images}: no such folder (the images of {table})")
        if not table.is_file():
            raise FovealError(f"{table}: no such file")
        names, rows = _read_table(table)
        if layout is None:
            layout, first = named_layout(names), table
        elif names != layout.names:
            raise FovealError(f"{table}: its landmarks {names} differ from those of {first}, {layout.names}")
        splits[split] = _read_rows(rows, table, images, layout.names, problems)
    splits = keep_readable(splits, problems, absolute(next(iter(sets.values()))[1]).parent)
    problems.warn()
    return DetectionData([LANDMARK_CLASS], splits, keypoints=layout)


def _read_table(table: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """(landmark names, [(line number, fields)] of the data rows) of a CSV; FovealError when malformed."""
    lines = enumerate(csv.reader(read_text(table).splitlines()), 1)
    rows = [(line, [field.strip() for field in fields]) for line, fields in lines if any(f.strip() for f in fields)]
    if not rows:
        raise FovealError(f"{table}: empty; each row is an image file name then x1, y1, x2, y2, ... in pixels")
    line, header = rows[0]
    if len(header) < 3 or len(header) % 2 == 0:
        raise FovealError(f"{table}:{line}: expected an image file name then x, y of each landmark (an odd count "
                          f"of 3 or more fields), found {len(header)}")
    try:
        float(header[1])
    except ValueError:  # a header row naming the columns
        return _header_names(header, table, line), rows[1:]
    return [str(k) for k in range((len(header) - 1) // 2)], rows


def _header_names(header: list[str], table: Path, line: int) -> list[str]:
    """The landmark names of a header `image,NAME_x,NAME_y,...` (also NAME.x, NAME x, NAME_X)."""
    names = []
    for x, y in zip(header[1::2], header[2::2]):
        name, axis = x[:-1], x[-1:]
        if axis.lower() != "x" or len(name) < 2 or name[-1] not in "_.- " or y != name + {"x": "y", "X": "Y"}[axis]:
            raise FovealError(f"{table}:{line}: header columns {x!r}, {y!r} are not a landmark's x and y "
                              f"(name them like left_eye_x, left_eye_y)")
        names.append(name[:-1])
    if len(set(names)) != len(names):
        raise FovealError(f"{table}:{line}: the header names a landmark twice")
    return names


def _read_rows(rows: list, table: Path, images: Path, names: list[str], problems: Problems) -> list:
    """One ImageAnnotations per row in file order; a bad row is reported and skipped."""
    items, seen = [], {}
    for line, fields in rows:
        place = f"{table}:{line}"
        try:
            if len(fields) != 1 + 2 * len(names):
                raise BadLabel(f"{place}: expected {1 + 2 * len(names)} fields (the image, then x, y of each of the "
                               f"{len(names)} landmarks), found {len(fields)}")
            file = absolute(images / fields[0])
            if file in seen:
                raise BadLabel(f"{place}: image {fields[0]} is already on line {seen[file]}; an image has one object")
            if not file.is_file():
                raise BadLabel(f"{place}: image {file} not found")
            seen[file] = line
            width, height = image_size(file)
            items.append(_landmark_item(file, fields[1:], names, width, height, place))
        except BadLabel as e:
            problems.add(str(e))
    return items


def _landmark_item(file: Path, fields: list[str], names: list[str], width: int, height: int,
                   place: str) -> ImageAnnotations:
    points = np.zeros((len(names), 3))
    for k, (x, y) in enumerate(zip(fields[::2], fields[1::2])):
        if x or y:
            try:
                points[k] = float(x), float(y), 2
            except ValueError:
                raise BadLabel(f"{place}: landmark {k} ({names[k]}): {x!r}, {y!r} is not a pixel position x, y "
                               f"(leave both empty for a landmark not labelled)") from None
    if not np.isfinite(points).all():
        raise BadLabel(f"{place}: a landmark position is not a finite number")
    keypoints = keypoint_rows(points, names, height, width, BOX_SLACK_PIXELS, place)
    labelled = keypoints[keypoints[:, 2] > 0, :2]
    if not len(labelled):
        raise BadLabel(f"{place}: no landmark is labelled")
    low, high = labelled.min(0), labelled.max(0)
    pad = np.maximum(PADDING * (high - low), 1.0)
    box = np.concatenate([np.maximum(low - pad, 0), np.minimum(high + pad, (width, height))])
    return ImageAnnotations(str(file), width, height, box.reshape(1, 4).astype(np.float32), np.zeros(1, np.int64),
                            np.zeros(1, bool), keypoints=keypoints[None])


def landmark_sets(text: str, data: str, forms: str) -> dict[str, tuple[Path, Path]]:
    """{split: (images folder, CSV)} of `landmarks:` text: IMAGES/,POINTS.csv[;VAL_IMAGES/,VAL.csv[;TEST...]]
    or a FOLDER/ holding images/ and one .csv."""
    parts = [[p.strip() for p in s.split(",")] for s in text.split(";") if s.strip()]
    if len(parts) == 1 and len(parts[0]) == 1:
        found = find_landmark_set(absolute(parts[0][0]))
        if found is None:
            raise FovealError(f"data={data}: {parts[0][0]} holds no images/ folder and one .csv; use {forms}")
        return {"train": found}
    if not parts or len(parts) > len(SPLITS) or not all(len(p) == 2 and all(p) for p in parts):
        raise FovealError(f"data={data}: not a landmark data set; use {forms}")
    return {split: (absolute(images), absolute(table)) for split, (images, table) in zip(SPLITS, parts)}
