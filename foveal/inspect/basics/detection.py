"""Detection in small numbers: boxes typed inline or read from a CSV, their IoU (foveal.ops.boxes),
non-maximum suppression step by step (ops.boxes.nms, torchvision's) and YOLO's output tensor layouts."""

import csv
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from ...errors import FovealError, did_you_mean
from ...ops.boxes import BOX_FORMATS, box_iou, convert_boxes, nms
from .ops import number

FORMAT_FIELDS = {"xyxy": "x1,y1,x2,y2", "xywh": "x,y,w,h", "cxcywh": "cx,cy,w,h"}


def check_format(format: str) -> None:
    if format not in BOX_FORMATS:
        raise FovealError(f"format: unknown box format '{format}'{did_you_mean(format, BOX_FORMATS)}; "
                          f"choose from {', '.join(BOX_FORMATS)}")


def as_xyxy(box: torch.Tensor, format: str, key: str, where: str = "") -> torch.Tensor:
    """(4,) xyxy of a box given in `format`; a FovealError for a box of negative width or height."""
    xyxy = convert_boxes(box[None], format, "xyxy")[0]
    if xyxy[2] < xyxy[0] or xyxy[3] < xyxy[1]:
        wrong = "x2 < x1" if xyxy[2] < xyxy[0] else "y2 < y1"
        raise FovealError(f"{key}: {where}{wrong} in {','.join(f'{v:g}' for v in box.tolist())}"
                          + (f" ({format}: negative {'width' if wrong[0] == 'x' else 'height'})"
                             if format != "xyxy" else ""))
    return xyxy


def parse_box(text: str, key: str, format: str = "xyxy") -> torch.Tensor:
    """'10,10,50,50' in `format` -> (4,) float64 xyxy."""
    check_format(format)
    values = [number(value, key, "") for value in re.split(r"[,\s]+", str(text).strip()) if value]
    if len(values) != 4:
        raise FovealError(f"{key}: expected 4 numbers ({FORMAT_FIELDS[format]}), got {len(values)}")
    return as_xyxy(torch.tensor(values, dtype=torch.float64), format, key)


@dataclass
class ScoredBoxes:
    boxes: torch.Tensor  # (N, 4) float64 xyxy
    scores: torch.Tensor  # (N,) float64
    classes: list[str] | None  # one name per box as written, None when no box names its class


def box_rows(text: str, key: str) -> list[tuple[str, list[str]]]:
    """(where, fields) of each box: inline rows by `;`, or the lines of a CSV file (a header line of names
    skipped)."""
    text = str(text).strip()
    if not text:
        raise FovealError(f"{key}: give boxes inline (x1,y1,x2,y2,score[,class];...) or a CSV file of such lines")
    path = Path(text).expanduser()
    if "," in text and not path.is_file():  # inline; a file name has no commas, or is there
        return [(f"box {i}: ", re.split(r"[,\s]+", row.strip())) for i, row in enumerate(text.strip(";").split(";"), 1)]
    if not path.is_file():
        raise FovealError(f"{key}: no such file: {text}")
    with path.open(newline="") as file:
        lines = [(f"{path.name}:{n}: ", [field.strip() for field in row]) for n, row in enumerate(csv.reader(file), 1)
                 if any(field.strip() for field in row)]
    if lines and lines[0][1][0][:1].isalpha():
        lines = lines[1:]  # a header
    if not lines:
        raise FovealError(f"{key}: {path.name} has no boxes")
    return lines


def parse_scored_boxes(text: str, key: str = "boxes", format: str = "xyxy") -> ScoredBoxes:
    """Boxes with scores and, optionally, classes: '10,10,50,50,0.9,cat; ...' or a CSV file of such lines."""
    check_format(format)
    boxes, scores, classes = [], [], []
    for where, fields in box_rows(text, key):
        if len(fields) not in (5, 6):
            raise FovealError(f"{key}: {where}expected 5 or 6 values ({FORMAT_FIELDS[format]},score[,class]), "
                              f"got {len(fields)}")
        values = torch.tensor([number(value, key, where.rstrip(": ")) for value in fields[:5]], dtype=torch.float64)
        boxes.append(as_xyxy(values[:4], format, key, where))
        scores.append(values[4])
        classes.append(fields[5] if len(fields) == 6 else None)
    if any(classes) and not all(classes):
        raise FovealError(f"{key}: some boxes name a class and some do not; give every box a class or none")
    return ScoredBoxes(torch.stack(boxes), torch.stack(scores), classes if all(classes) else None)


@dataclass
class NmsStep:
    taken: int  # the box kept at this step (0-based, in the given order)
    suppressed: list[tuple[int, float]]  # the boxes it removes, with their IoU with it


def nms_steps(boxes: ScoredBoxes, iou: float, agnostic: bool = False) -> list[NmsStep]:
    """What greedy NMS did, one step per kept box: ops.boxes.nms keeps the boxes (highest score first), and a
    box it dropped is charged to the first kept box that overlaps it by IoU > `iou` (of its class unless
    `agnostic`), the one that removed it."""
    if not 0 <= iou <= 1:
        raise FovealError(f"iou: expected a threshold between 0 and 1, got {iou:g}")
    names = boxes.classes or [""] * len(boxes.scores)
    labels = torch.tensor([sorted(set(names)).index(name) for name in names])
    kept = nms(boxes.boxes, boxes.scores, labels, iou, len(labels), class_agnostic=agnostic).tolist()
    overlaps = box_iou(boxes.boxes, boxes.boxes)
    left = [i for i in torch.argsort(boxes.scores, descending=True, stable=True).tolist() if i not in kept]
    steps = []
    for k in kept:
        removed = [i for i in left if overlaps[k, i] > iou and (agnostic or labels[i] == labels[k])]
        steps.append(NmsStep(k, [(i, float(overlaps[k, i])) for i in removed]))
        left = [i for i in left if i not in removed]
    return steps


def yolo_layouts(boxes: int, classes: int) -> dict[str, tuple[int, list[tuple[int, int, str]]]]:
    """Each layout's numbers per grid cell and what they are, as (first, last, meaning) index ranges: YOLOv1's
    (B boxes share one set of C class probabilities) and the anchor-based heads' of YOLOv2/v3 (each of B
    anchors has its own C class scores)."""
    for key, value in (("boxes", boxes), ("classes", classes)):
        if value < 1:
            raise FovealError(f"{key}: expected an integer >= 1, got {value}")
    v1 = [(5 * b, 5 * b + 4, f"box {b + 1}: x, y, w, h, confidence") for b in range(boxes)]
    v1.append((5 * boxes, 5 * boxes + classes - 1, f"P(class 1..{classes} | object), shared by the cell's boxes"))
    per_anchor = 5 + classes
    anchors = [group for b in range(boxes) for group in (
        (b * per_anchor, b * per_anchor + 4, f"anchor {b + 1}: x, y, w, h, objectness"),
        (b * per_anchor + 5, (b + 1) * per_anchor - 1, f"anchor {b + 1}: class 1..{classes} scores"))]
    return {"yolov1": (boxes * 5 + classes, v1), "anchors": (boxes * per_anchor, anchors)}
