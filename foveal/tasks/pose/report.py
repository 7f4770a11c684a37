"""The pose report: loss and OKS AP curves, OKS PR curves, per-class AP (OKS and box), val images with
skeletons (the truth's and the predictions')."""

from pathlib import Path

import numpy as np

from ...data.detect_dataset import read_rgb
from ...data.keypoints import joint_sides
from ...engine.contract import EvalResult
from ...report import Section, Table, image_grid, plot_curves, plot_pr_curves, write_report
from ...report.draw import GRID_SIDE, draw_boxes, draw_skeletons, enlarged

NO_VAL_LOSS = "loss: training loss only; there is no validation loss (pose models return no losses in eval mode)"


def prediction_grid(items, detections, classes, layout, count: int = 12, conf: float = 0.25) -> bytes:
    """Val images with the true skeletons (left) beside the predicted ones above `conf` with their boxes (right)."""
    images, captions, sides = [], [], joint_sides(layout.names)
    for item, det in list(zip(items, detections))[:count]:
        image, k = enlarged(read_rgb(item), GRID_SIDE)
        truth = item.keypoints * np.array([k, k, 1], np.float32)
        truth[..., 2] = truth[..., 2] > 0  # labelled joints drawn, hidden ones too
        keep = np.asarray(det["scores"]) >= conf
        joints = np.asarray(det["keypoints"])[keep] * np.array([k, k, 1], np.float32)
        predicted = draw_boxes(image, np.asarray(det["boxes"])[keep] * k, np.asarray(det["labels"])[keep], classes,
                               np.asarray(det["scores"])[keep], line_width=1)
        images += [draw_skeletons(image.copy(), truth, layout.skeleton, sides, 0.5),
                   draw_skeletons(predicted, joints, layout.skeleton, sides, 0.5)]
        captions += [f"{len(item.labels)} true", f"{int(keep.sum())} predicted"]
    return image_grid(images, captions, columns=4)


def per_class_table(result: EvalResult, classes, items) -> Table:
    """OKS AP50-95 and AP50, box AP50-95, and true instances of each class (-1: no ground truth)."""
    pose, box = result.details["coco"], result.details["box"]
    return Table(["class", "OKS AP50-95", "OKS AP50", "box AP50-95", "instances"],
                 [[c, pose.per_class_ap[c], pose.per_class_ap50[c], box.per_class_ap[c],
                   int(sum((item.labels == k).sum() for item in items))] for k, c in enumerate(classes)])


def write_pose_report(run_dir: Path, title: str, history: list[dict], result: EvalResult, classes, items, layout):
    pose = result.details["coco"]
    loss_keys = sorted({k for row in history for k in row if k.startswith("train_")})
    groups = [("loss", loss_keys), ("OKS AP", ["map", "map50", "map75", "box_map"]),
              ("PCK@0.2 and NME", ["pck", "nme"]), ("learning rate", ["lr"])]  # PCK: landmarks only (else skipped)
    curves = np.asarray(pose.pr_curve(0.5))  # (R, K)
    precision = {name: curves[:, k] for k, name in enumerate(classes)}
    sections = [Section("summary", [result.metrics])]
    if history:
        sections.append(Section("training curves", [NO_VAL_LOSS, plot_curves(history, groups)]))
    sections += [
        Section("precision-recall (OKS 0.5)", [plot_pr_curves(np.asarray(pose.recall_thresholds), precision)]),
        Section("per-class AP", [per_class_table(result, classes, items)]),
        Section("validation images", ["left: the true joints; right: predictions >= 0.25 (joints >= 0.5); "
                                      "light blue: left side, pink: right side",
                                      prediction_grid(items, result.details["detections"], classes, layout)]),
    ]
    write_report(run_dir / "report.html", title, sections)
