"""Segmentation reports: curves, per-class IoU and Dice (or mask AP), val images with true and predicted masks."""

from pathlib import Path

import numpy as np

from ...data.detect_dataset import read_rgb
from ...data.segmentation import read_labels
from ...engine.contract import EvalResult
from ...report import Section, Table, image_grid, plot_bars, plot_curves, write_report
from ...report.draw import GRID_SIDE, draw_instances, enlarged, overlay_classes

MIOU_NOTE = ("mIoU and mean Dice: one confusion matrix over every pixel of the split at each image's own size, "
             "ignored pixels (255) left out, averaged over the classes that occur in the ground truth or the "
             "predictions (background included; dice_fg leaves it out).")


def semantic_grid(items, samples, num_classes: int, binary_masks: bool = False) -> bytes:
    """Rows of image | true mask | predicted mask for the first val images."""
    images, captions = [], []
    for index, predicted in samples:
        item = items[index]
        image = read_rgb(item)
        images += [image, overlay_classes(image, read_labels(item, num_classes, binary_masks)), overlay_classes(image, predicted)]
        captions += [f"image {index}", "true", "predicted"]
    return image_grid(images, captions, columns=6)


def semantic_table(result: EvalResult, classes) -> Table:
    """IoU, Dice and true and predicted pixels of each class (NaN: in neither), for the report and `val`."""
    semantic = result.details["semantic"]
    confusion = np.asarray(semantic.confusion)  # rows: true class, columns: predicted
    return Table(["class", "IoU", "Dice", "true pixels", "predicted pixels"],
                 [[c, semantic.per_class_iou[c], semantic.per_class_dice[c], int(confusion[k].sum()),
                   int(confusion[:, k].sum())] for k, c in enumerate(classes)])


def write_semantic_report(run_dir: Path, title: str, history: list[dict], result: EvalResult, classes, items,
                          curve_groups, binary_masks: bool = False):
    semantic = result.details["semantic"]
    table = semantic_table(result, classes)
    loss_keys = sorted({k for row in history for k in row if k.startswith("train_")})
    groups = [("loss", loss_keys), *curve_groups[1:]]
    sections = [Section("summary", [result.metrics, MIOU_NOTE])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, groups)]))
    sections += [
        Section("per-class IoU", ["NaN: the class occurs neither in the ground truth nor in the predictions", table,
                                  plot_bars({c: float(np.nan_to_num(semantic.per_class_iou[c])) for c in classes},
                                            "IoU per class")]),
        Section("validation images", ["each row: the image, its true mask, the predicted mask (class colours; "
                                      "dark grey: ignored pixels)",
                                      semantic_grid(items, result.details["samples"], len(classes), binary_masks)]),
    ]
    write_report(run_dir / "report.html", title, sections)


def instance_grid(items, detections, classes, count: int = 8, conf: float = 0.25) -> bytes:
    """Pairs of true instances | predicted instances (score >= conf) for the first val images."""
    from ...data.detection import instance_masks

    images, captions = [], []
    for item, det in list(zip(items, detections))[:count]:
        image, k = enlarged(read_rgb(item), GRID_SIDE)  # captions on a 64 px scene would hide it

        def larger(masks):
            return np.repeat(np.repeat(np.asarray(masks), k, 1), k, 2)

        images.append(draw_instances(image, larger(instance_masks(item)), item.boxes * k, item.labels, classes,
                                     line_width=2))
        keep = np.asarray(det["scores"]) >= conf
        images.append(draw_instances(image, larger(det["masks"])[keep], np.asarray(det["boxes"])[keep] * k,
                                     np.asarray(det["labels"])[keep], classes, np.asarray(det["scores"])[keep],
                                     line_width=2))
        captions += [f"{len(item.labels)} true", f"{int(keep.sum())} predicted"]
    return image_grid(images, captions, columns=4)


def instance_table(result: EvalResult, classes, items) -> Table:
    """Mask and box AP50-95 and AP50 and true instances of each class, for the report and `val`."""
    box, segm = result.details["coco"], result.details["segm"]
    return Table(["class", "mask AP50-95", "mask AP50", "box AP50-95", "box AP50", "instances"],
                 [[c, segm.per_class_ap[c], segm.per_class_ap50[c], box.per_class_ap[c], box.per_class_ap50[c],
                   int(sum((item.labels == k).sum() for item in items))] for k, c in enumerate(classes)])


def write_instance_report(run_dir: Path, title: str, history: list[dict], result: EvalResult, classes, items):
    table = instance_table(result, classes, items)
    loss_keys = sorted({k for row in history for k in row if k.startswith("train_")})
    groups = [("loss", loss_keys), ("AP", ["mask_map", "mask_map50", "map", "map50"]), ("learning rate", ["lr"])]
    sections = [Section("summary", [result.metrics, "mask_*: COCO segm AP of the masks; the rest: COCO bbox AP. "
                                    "No validation loss: the models return losses only in training mode."])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, groups)]))
    sections += [
        Section("per-class AP", [table]),
        Section("validation images", ["pairs: true instances, then predictions with score >= 0.25",
                                      instance_grid(items, result.details["detections"], classes)]),
    ]
    write_report(run_dir / "report.html", title, sections)
