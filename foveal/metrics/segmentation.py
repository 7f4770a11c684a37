"""Semantic-segmentation metrics: one pixel confusion matrix per split, and the scores read from it.

mIoU is a dataset-level number (/work/shared/METRICS.md): every pixel of the split goes into one
confusion matrix, pixels labelled `ignore_index` are dropped, and IoU per class is read from the
totals. Averaging per-image IoUs gives a different, non-standard number, so SegmentationMeter adds
batches into the matrix instead. The matrix is built with torch.bincount, on whatever device the
predictions live; the scores are computed in float64 numpy. Tests check them against scikit-learn.
"""

from dataclasses import dataclass, field

import numpy as np
import torch

from foveal.errors import FovealError

METRIC_KEYS = ("miou", "dice", "dice_fg", "pixel_acc", "mean_acc")  # the flat numbers, in metrics.csv order


def _as_tensor(x, name: str) -> torch.Tensor:
    """A tensor or array of class indices as an int64 tensor (on its own device)."""
    x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex():
        raise FovealError(f"{name} must hold class indices (an integer tensor), got {x.dtype}; "
                          f"take the argmax over the class dimension (or threshold a sigmoid) first")
    return x.long()


def confusion_matrix(pred, target, num_classes: int, ignore_index: int | None = 255) -> torch.Tensor:
    """(C, C) int64 pixel counts: rows are the true class, columns the predicted one (as scikit-learn).

    pred and target are integer tensors (or arrays) of class indices of any one shape, e.g. (B, H, W);
    pixels whose target is `ignore_index` are dropped (None keeps every pixel). The result is on
    pred's device. A target outside 0..C-1 that is not ignore_index, or a prediction outside
    0..C-1, is a FovealError (usually a wrong num_classes or an unmapped label value).
    """
    pred, target = _as_tensor(pred, "pred"), _as_tensor(target, "target")
    if pred.shape != target.shape:
        raise FovealError(f"pred has shape {tuple(pred.shape)} and target {tuple(target.shape)}; they must match")
    target = target.to(pred.device)
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for values, name in ((target, "target"), (pred, "pred")):
        bad = values[(values < 0) | (values >= num_classes)]
        if bad.numel():
            allowed = f" or ignore_index {ignore_index}" if name == "target" and ignore_index is not None else ""
            raise FovealError(f"{name} has class value {bad[0].item()}, outside 0..{num_classes - 1}{allowed} "
                              f"for {num_classes} classes")
    index = target.reshape(-1) * num_classes + pred.reshape(-1)  # (P,) one bin per (true, predicted) pair
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _mean(values: np.ndarray) -> float:
    """The mean of the non-NaN entries; 0.0 when there are none (no pixel counted at all)."""
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else 0.0


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator per class, NaN where the denominator is 0 (the class has no pixels)."""
    out = np.full(numerator.shape, np.nan)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


@dataclass
class SemanticEval:
    confusion: np.ndarray  # (C, C) int64: rows true class, columns predicted class
    per_class_iou: dict[str, float]  # TP / (TP + FP + FN); NaN for a class in neither ground truth nor predictions
    per_class_dice: dict[str, float]  # 2TP / (2TP + FP + FN); NaN where IoU is NaN
    per_class_acc: dict[str, float]  # recall TP / (TP + FN); NaN for a class absent from the ground truth
    metrics: dict[str, float] = field(default_factory=dict)  # METRIC_KEYS: flat floats for metrics.csv, never NaN


def semantic_metrics(confusion, class_names: list[str] | None = None) -> SemanticEval:
    """Scores of a (C, C) pixel confusion matrix (rows true class, columns predicted), tensor or array.

    The flat `metrics` dict holds:
      miou       mean IoU over the classes that occur in the ground truth or the predictions
                 (a class in neither has no IoU and is left out; one only predicted counts as 0);
      dice       mean Dice over the same classes, background (class 0) included;
      dice_fg    the same mean with class 0 left out, for data whose class 0 is the background;
      pixel_acc  correctly classified pixels / all counted pixels;
      mean_acc   recall averaged over the classes that occur in the ground truth.
    A mean over no classes (an empty matrix, or dice_fg with no foreground anywhere) is 0.0.
    class_names default to "0", "1", ...
    """
    if isinstance(confusion, torch.Tensor):
        confusion = confusion.detach().cpu().numpy()
    confusion = np.asarray(confusion, np.int64)
    num_classes = confusion.shape[0]
    if confusion.shape != (num_classes, num_classes):
        raise FovealError(f"confusion matrix must be square, got shape {confusion.shape}")
    names = list(class_names) if class_names is not None else [str(c) for c in range(num_classes)]
    if len(names) != num_classes:
        raise FovealError(f"{len(names)} class names for a {num_classes}-class confusion matrix")
    counts = confusion.astype(np.float64)
    tp, actual, predicted = np.diag(counts), counts.sum(1), counts.sum(0)
    union = actual + predicted - tp  # TP + FN + FP: 0 exactly for a class in neither
    iou, dice, recall = _ratio(tp, union), _ratio(2 * tp, actual + predicted), _ratio(tp, actual)
    total = counts.sum()
    metrics = {"miou": _mean(iou), "dice": _mean(dice), "dice_fg": _mean(dice[1:]),
               "pixel_acc": float(tp.sum() / total) if total else 0.0, "mean_acc": _mean(recall)}

    def named(values):
        return {name: float(v) for name, v in zip(names, values)}

    return SemanticEval(confusion, named(iou), named(dice), named(recall), metrics)


class SegmentationMeter:
    """Adds batches of predicted and true class masks into one confusion matrix, then scores it.

        meter = SegmentationMeter(num_classes, ignore_index=255)
        for images, targets in loader:
            meter.update(model(images).argmax(1), targets)  # (B, H, W) each
        result = meter.compute(class_names)  # SemanticEval; result.metrics is the flat dict
    """

    def __init__(self, num_classes: int, ignore_index: int | None = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion: torch.Tensor | None = None  # (C, C) int64 on the device of the first batch

    def reset(self) -> None:
        self.confusion = None

    def update(self, pred, target) -> None:
        """Count one batch: pred and target class indices of equal shape, e.g. (B, H, W)."""
        batch = confusion_matrix(pred, target, self.num_classes, self.ignore_index)
        self.confusion = batch if self.confusion is None else self.confusion + batch.to(self.confusion.device)

    def compute(self, class_names: list[str] | None = None) -> SemanticEval:
        if self.confusion is None:
            return semantic_metrics(np.zeros((self.num_classes, self.num_classes), np.int64), class_names)
        return semantic_metrics(self.confusion, class_names)
