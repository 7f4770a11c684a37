"""Segmentation metrics: semantic scores against scikit-learn, mask AP against pycocotools' COCOeval."""

import contextlib
import io

import numpy as np
import pytest
import torch
from pycocotools import mask as coco_mask
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from sklearn import metrics as skm

from foveal.data.detection import ImageAnnotations
from foveal.errors import FovealError
from foveal.metrics.detection import STAT_NAMES, coco_evaluate
from foveal.metrics.segmentation import METRIC_KEYS, SegmentationMeter, confusion_matrix, semantic_metrics

# ---------------------------------------------------------------- semantic segmentation


def semantic_case(kind, seed):
    """(pred, target, num_classes) as (2, 7, 9) int64 tensors, about 15% of targets ignore (255)."""
    rng = np.random.default_rng(seed)
    shape = (2, 7, 9)
    if kind == "random":
        num_classes, target = 5, rng.integers(0, 5, shape)
        pred = np.where(rng.random(shape) < 0.6, target, rng.integers(0, 5, shape))
    elif kind == "absent":  # class 4 is only predicted, class 5 occurs nowhere
        num_classes, target = 6, rng.integers(0, 4, shape)
        pred = np.where(rng.random(shape) < 0.5, target, rng.integers(0, 5, shape))
    else:  # all background
        num_classes, target, pred = 3, np.zeros(shape, np.int64), np.zeros(shape, np.int64)
    target = np.where(rng.random(shape) < 0.15, 255, target)
    return torch.from_numpy(pred), torch.from_numpy(target), num_classes


def sklearn_reference(pred, target, num_classes):
    """scikit-learn on the kept pixels: confusion, IoU, Dice (= F1) and recall per class, NaN where undefined."""
    keep = target.numpy().ravel() != 255
    y_true, y_pred = target.numpy().ravel()[keep], pred.numpy().ravel()[keep]
    labels = list(range(num_classes))
    per_class = dict(labels=labels, average=None, zero_division=np.nan)
    iou = skm.jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)  # no NaN option
    iou[~np.isin(labels, np.union1d(y_true, y_pred))] = np.nan  # a class in neither has no IoU
    return dict(confusion=skm.confusion_matrix(y_true, y_pred, labels=labels),
                iou=iou, dice=skm.f1_score(y_true, y_pred, **per_class),
                recall=skm.recall_score(y_true, y_pred, **per_class), accuracy=skm.accuracy_score(y_true, y_pred))


@pytest.mark.parametrize("kind,seed", [("random", 0), ("random", 1), ("random", 2), ("absent", 3), ("absent", 4),
                                       ("background", 5)])
def test_semantic_metrics_agree_with_sklearn(kind, seed):
    pred, target, num_classes = semantic_case(kind, seed)
    expected = sklearn_reference(pred, target, num_classes)
    confusion = confusion_matrix(pred, target, num_classes)
    assert confusion.dtype == torch.int64 and np.array_equal(confusion.numpy(), expected["confusion"])
    result = semantic_metrics(confusion, [f"class{c}" for c in range(num_classes)])
    np.testing.assert_allclose(list(result.per_class_iou.values()), expected["iou"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(result.per_class_dice.values()), expected["dice"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(result.per_class_acc.values()), expected["recall"], rtol=0, atol=1e-12)
    assert list(result.metrics) == list(METRIC_KEYS) and not np.isnan(list(result.metrics.values())).any()
    assert result.metrics["miou"] == pytest.approx(np.nanmean(expected["iou"]), abs=1e-12)
    assert result.metrics["dice"] == pytest.approx(np.nanmean(expected["dice"]), abs=1e-12)
    assert result.metrics["pixel_acc"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert result.metrics["mean_acc"] == pytest.approx(np.nanmean(expected["recall"]), abs=1e-12)
    if kind == "background":  # no foreground anywhere: IoU 1 for background, the rest undefined
        assert result.metrics == {"miou": 1.0, "dice": 1.0, "dice_fg": 0.0, "pixel_acc": 1.0, "mean_acc": 1.0}
    else:
        assert result.metrics["dice_fg"] == pytest.approx(np.nanmean(expected["dice"][1:]), abs=1e-12)
    if kind == "absent":
        assert np.isnan(result.per_class_iou["class5"]) and result.per_class_iou["class4"] == 0
        assert np.isnan(result.per_class_acc["class4"])  # only predicted: no recall, left out of mean_acc


def test_tiny_case_by_hand():
    target = torch.tensor([[0, 0, 1, 1], [0, 2, 2, 255]])
    pred = torch.tensor([[0, 1, 1, 1], [0, 2, 0, 1]])  # the last pixel is ignored whatever it predicts
    confusion = confusion_matrix(pred, target, 3)
    assert confusion.tolist() == [[2, 1, 0], [0, 2, 0], [1, 0, 1]]
    result = semantic_metrics(confusion, ["bg", "a", "b"])
    # bg: TP 2, FN 1, FP 1 -> IoU 2/4, Dice 4/6; a: TP 2, FP 1 -> 2/3, 4/5; b: TP 1, FN 1 -> 1/2, 2/3
    assert result.per_class_iou == pytest.approx({"bg": 0.5, "a": 2 / 3, "b": 0.5})
    assert result.per_class_dice == pytest.approx({"bg": 2 / 3, "a": 0.8, "b": 2 / 3})
    assert result.metrics == pytest.approx({"miou": (0.5 + 2 / 3 + 0.5) / 3, "dice": (2 / 3 + 0.8 + 2 / 3) / 3,
                                            "dice_fg": (0.8 + 2 / 3) / 2, "pixel_acc": 5 / 7,
                                            "mean_acc": (2 / 3 + 1 + 1 / 2) / 3})
    binary = confusion_matrix(torch.tensor([True, True, False]), torch.tensor([1, 0, 0], dtype=torch.uint8), 2)
    assert binary.tolist() == [[1, 1], [0, 1]]  # a thresholded sigmoid model is two classes


def test_batches_add_up_to_the_whole():
    (pred_a, target_a, _), (pred_b, target_b, _) = semantic_case("random", 6), semantic_case("random", 7)
    meter = SegmentationMeter(5)
    assert meter.compute().metrics == dict.fromkeys(METRIC_KEYS, 0.0)  # nothing counted yet
    meter.update(pred_a, target_a)
    meter.update(pred_b.numpy(), target_b.numpy())
    whole = confusion_matrix(torch.cat([pred_a, pred_b]), torch.cat([target_a, target_b]), 5)
    assert torch.equal(meter.confusion, whole)
    assert meter.compute(list("abcde")).metrics == semantic_metrics(whole, list("abcde")).metrics
    meter.reset()
    assert meter.confusion is None


def test_bad_input_is_a_user_error():
    target = torch.tensor([[0, 1], [7, 255]])
    with pytest.raises(FovealError, match="target has class value 7, outside 0..2 or ignore_index 255"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), target, 3)
    with pytest.raises(FovealError, match="target has class value 255"):
        confusion_matrix(torch.zeros(2, 2, dtype=torch.long), torch.full((2, 2), 255), 3, ignore_index=None)
    with pytest.raises(FovealError, match="pred has class value 3"):
        confusion_matrix(torch.full((2, 2), 3), torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(FovealError, match="argmax"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(FovealError, match="shape"):
        confusion_matrix(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2, dtype=torch.long), 3)
    with pytest.raises(FovealError, match="2 class names"):
        semantic_metrics(torch.zeros(3, 3, dtype=torch.long), ["a", "b"])


# ---------------------------------------------------------------- instance masks (COCO segm)

CLASSES = ["cat", "dog", "bird"]
HEIGHT, WIDTH = 100, 120  # 12000 pixels: masks can be small, medium or large (> 96**2)


def random_mask(rng) -> np.ndarray:
    """(H, W) bool: a rectangle or an ellipse of any size, sometimes exactly 32 x 32 = 1024 pixels or
    at least 97 x 97 (large)."""
    mask = np.zeros((HEIGHT, WIDTH), bool)
    size = rng.random()
    h, w = ((32, 32) if size < 0.15 else rng.integers(97, [HEIGHT, WIDTH], endpoint=True) if size < 0.25
            else np.exp(rng.uniform(np.log(3), np.log([HEIGHT, WIDTH]))).astype(int))
    y, x = int(rng.integers(0, HEIGHT - h + 1)), int(rng.integers(0, WIDTH - w + 1))
    if rng.random() < 0.5:
        mask[y:y + h, x:x + w] = True
    else:
        yy, xx = np.mgrid[:h, :w]
        mask[y:y + h, x:x + w] = ((yy + 0.5 - h / 2) / (h / 2)) ** 2 + ((xx + 0.5 - w / 2) / (w / 2)) ** 2 <= 1
    return mask


def noisy_copy(mask, rng) -> np.ndarray:
    """The mask shifted by a few pixels, with a few pixels along its rows flipped, or exact."""
    if rng.random() < 0.3:
        return mask.copy()
    shifted = np.roll(mask, tuple(rng.integers(-3, 4, 2)), (0, 1))
    return shifted ^ (rng.random(mask.shape) < 0.02) & np.roll(shifted, 1, 1)


def mask_box(mask) -> list[float]:
    ys, xs = np.nonzero(mask)
    return [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [0, 0, 0, 0]


def mask_case(seed, num_images=5, absent_class=None, crowd_rate=0.15, many=False):
    """Random instance masks and detections: noisy copies, wrong labels, false positives (one of them
    empty), scores with ties; image 1 has no detections. Detection masks alternate numpy bool / torch uint8."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for image in range(num_images):
        n = int(rng.integers(0, 7))
        masks = np.stack([random_mask(rng) for _ in range(n)]) if n else np.zeros((0, HEIGHT, WIDTH), bool)
        labels = rng.integers(0, len(CLASSES), n)
        if absent_class is not None:
            labels[labels == absent_class] = (absent_class + 1) % len(CLASSES)
        boxes = np.array([mask_box(m) for m in masks], np.float32).reshape(-1, 4)
        ground_truth.append(ImageAnnotations("", WIDTH, HEIGHT, boxes, labels, rng.random(n) < crowd_rate,
                                             masks=masks))
        copies = np.repeat(np.arange(n), rng.integers(0, 3, n)) if image != 1 else np.zeros(0, int)
        det_masks = [noisy_copy(masks[c], rng) for c in copies]
        det_labels = np.where(rng.random(len(copies)) < 0.1, rng.integers(0, len(CLASSES), len(copies)),
                              labels[copies])
        extra = (150 if many else int(rng.integers(0, 4))) * (image != 1)
        det_masks += [random_mask(rng) for _ in range(extra)]
        if image == 2:
            det_masks.append(np.zeros((HEIGHT, WIDTH), bool))
        det_labels = np.concatenate([det_labels, rng.integers(0, len(CLASSES), len(det_masks) - len(copies))])
        det_masks = np.stack(det_masks) if det_masks else np.zeros((0, HEIGHT, WIDTH), bool)
        detections.append({"boxes": np.array([mask_box(m) for m in det_masks], np.float32).reshape(-1, 4),
                           "scores": np.round(rng.random(len(det_masks)), 1), "labels": det_labels,
                           "masks": torch.from_numpy(det_masks.astype(np.uint8)) if image % 2 else det_masks})
    return ground_truth, detections


def rle(mask) -> dict:
    return coco_mask.encode(np.asfortranarray(np.asarray(mask, np.uint8)))


def segm_reference(ground_truth, detections):
    """pycocotools COCOeval(iouType="segm") on dicts built here: (12 stats, per-class AP)."""
    images, annotations, results = [], [], []
    for i, (gt, det) in enumerate(zip(ground_truth, detections), start=1):
        images.append({"id": i, "width": WIDTH, "height": HEIGHT})
        for mask, label, crowd in zip(gt.masks, gt.labels, gt.crowd):
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label) + 1,
                                "segmentation": rle(mask), "area": float(mask.sum()), "iscrowd": int(crowd),
                                "bbox": list(coco_mask.toBbox(rle(mask)))})
        for mask, score, label in zip(np.asarray(det["masks"]), det["scores"], det["labels"]):
            results.append({"image_id": i, "category_id": int(label) + 1, "segmentation": rle(mask),
                            "score": float(score)})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    ap = [p[p > -1].mean() if (p > -1).any() else -1 for p in precision.transpose(2, 0, 1)]
    return evaluator.stats, ap


def assert_segm_agrees(ground_truth, detections):
    ours = coco_evaluate(ground_truth, detections, CLASSES, iou_type="segm")
    stats, ap = segm_reference(ground_truth, detections)
    assert list(ours.stats) == list(STAT_NAMES)
    np.testing.assert_allclose(list(ours.stats.values()), stats, rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(ours.per_class_ap.values()), ap, rtol=0, atol=1e-12)
    return ours


@pytest.mark.parametrize("seed", range(3))
def test_mask_ap_agrees_with_pycocotools(seed):
    ground_truth, detections = mask_case(seed, absent_class=2 if seed == 1 else None, crowd_rate=0.15 + 0.2 * seed)
    assert sum(g.crowd.sum() for g in ground_truth) > 0 and len(detections[1]["scores"]) == 0
    result = assert_segm_agrees(ground_truth, detections)
    if seed == 1:
        assert result.per_class_ap["bird"] == -1
    boxes = coco_evaluate(ground_truth, detections, CLASSES)  # the same detections scored by their boxes
    assert boxes.stats != result.stats


def test_mask_ap_with_many_detections_and_all_sizes():
    ground_truth, detections = mask_case(10, num_images=3, many=True)
    assert max(len(d["scores"]) for d in detections) > 100
    areas = np.concatenate([g.masks.sum((1, 2)) for g in ground_truth])
    assert (areas < 32**2).any() and (areas == 32**2).any() and (areas > 96**2).any()
    assert_segm_agrees(ground_truth, detections)


def test_perfect_masks():
    ground_truth, _ = mask_case(11, crowd_rate=0)
    perfect = [{"boxes": g.boxes, "scores": np.ones(len(g.labels)), "labels": g.labels, "masks": g.masks}
               for g in ground_truth]
    result = assert_segm_agrees(ground_truth, perfect)
    assert result.stats["map"] == 1.0 and result.stats["mar100"] == 1.0


def test_bad_masks_are_a_user_error():
    ground_truth, detections = mask_case(12, num_images=1)
    ground_truth[0].labels, ground_truth[0].masks = np.array([0]), random_mask(np.random.default_rng(0))[None]
    ground_truth[0].boxes, ground_truth[0].crowd = np.zeros((1, 4), np.float32), np.zeros(1, bool)
    with pytest.raises(FovealError, match="did you mean 'segm'"):
        coco_evaluate(ground_truth, detections, CLASSES, iou_type="seg")
    with pytest.raises(FovealError, match="has no masks"):
        coco_evaluate(ground_truth, [{k: v for k, v in detections[0].items() if k != "masks"}], CLASSES, "segm")
    one = {"boxes": np.zeros((1, 4)), "scores": np.ones(1), "labels": np.zeros(1, int)}
    with pytest.raises(FovealError, match=r"expected \(1, 100, 120\)"):
        coco_evaluate(ground_truth, [{**one, "masks": np.ones((1, 50, 60), bool)}], CLASSES, "segm")
    with pytest.raises(FovealError, match="threshold"):
        coco_evaluate(ground_truth, [{**one, "masks": np.ones((1, HEIGHT, WIDTH))}], CLASSES, "segm")
