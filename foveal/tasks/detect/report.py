"""The detection report: loss and mAP curves, PR curves, confusion matrix, per-class AP, val images."""

from pathlib import Path

import numpy as np

from ...data.detect_dataset import read_rgb
from ...engine.contract import EvalResult
from ...report import Section, Table, image_grid, plot_confusion, plot_curves, plot_pr_curves, write_report
from ...report.draw import GRID_SIDE, draw_boxes, enlarged

GROUND_TRUTH_COLOUR = (40, 200, 40)
# the detectors' contract gives losses in training and detections in eval, so val is scored by mAP only
NO_VAL_LOSS = "loss: training loss only; there is no validation loss (detectors return no losses in eval mode)"


def prediction_grid(items, detections, classes, count: int = 12, conf: float = 0.25) -> bytes:
    """Val images with true boxes (green, no score) and predictions above `conf` (class colours)."""
    images, captions = [], []
    for item, det in list(zip(items, detections))[:count]:
        image, k = enlarged(read_rgb(item), GRID_SIDE)  # captions on a 64 px scene would hide it
        image = draw_boxes(image, item.boxes * k, item.labels, classes, colour=GROUND_TRUTH_COLOUR, line_width=1)
        keep = det["scores"] >= conf
        image = draw_boxes(image, det["boxes"][keep] * k, det["labels"][keep], classes, det["scores"][keep])
        images.append(image)
        captions.append(f"{len(item.labels)} true, {int(keep.sum())} predicted")
    return image_grid(images, captions, columns=4)


def per_class_table(result: EvalResult, classes, items) -> Table:
    """AP50-95, AP50 and true instances of each class (-1: no ground truth) for the report and `val`."""
    coco = result.details["coco"]
    return Table(["class", "AP50-95", "AP50", "instances"],
                 [[c, coco.per_class_ap[c], coco.per_class_ap50[c],
                   int(sum((item.labels == k).sum() for item in items))] for k, c in enumerate(classes)])


def write_detect_report(run_dir: Path, title: str, history: list[dict], result: EvalResult, classes, items):
    coco = result.details["coco"]
    loss_keys = sorted({k for row in history for k in row if k.startswith("train_")})
    groups = [("loss", loss_keys), ("mAP", ["map", "map50", "map75"]), ("learning rate", ["lr"])]
    curves = coco.pr_curve(0.5)  # (R, K)
    precision = {name: np.asarray(curves)[:, k] for k, name in enumerate(classes)}
    table = per_class_table(result, classes, items)
    sections = [Section("summary", [result.metrics])]
    if history:
        sections.append(Section("training curves", [NO_VAL_LOSS, plot_curves(history, groups)]))
    sections += [
        Section("precision-recall (IoU 0.5)", [plot_pr_curves(np.asarray(coco.recall_thresholds), precision)]),
        Section("per-class AP", [table]),
        Section("confusion matrix (IoU 0.5, confidence 0.25)",
                ["last row: false detections on background; last column: missed objects",
                 plot_confusion(np.asarray(result.details["confusion"]), [*classes, "background"], normalize=False)]),
        Section("validation images", ["green: true boxes; coloured with scores: predictions >= 0.25",
                                      prediction_grid(items, result.details["detections"], classes)]),
    ]
    write_report(run_dir / "report.html", title, sections)
