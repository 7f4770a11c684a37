"""COCO-style detection metrics: box, mask and keypoint (OKS) mAP through faster-coco-eval, and a confusion matrix.

`coco_evaluate` converts foveal's detection form (foveal/data/detection.py) into COCO dicts in
memory, instance masks as COCO's compressed RLE, keypoints as COCO's flat [x, y, v] lists, and runs
faster-coco-eval, which implements pycocotools' COCOeval in C++; the tests check the numbers against
pycocotools itself (see /work/shared/METRICS.md for the conventions matched).
"""

import contextlib
import io
from dataclasses import dataclass

import numpy as np
import torch

from foveal.data.detection import ImageAnnotations, result_image_id
from foveal.errors import FovealError, did_you_mean
from foveal.ops.boxes import box_area, box_iou
from foveal.ops.keypoints import COCO_SIGMAS, default_sigmas

IOU_TYPES = ("bbox", "segm", "keypoints")  # COCOeval's iouType: boxes, instance masks, or keypoints by OKS
STAT_NAMES = ("map", "map50", "map75", "map_small", "map_medium", "map_large",
              "mar1", "mar10", "mar100", "mar_small", "mar_medium", "mar_large")  # COCOeval.stats order
# COCOeval(iouType="keypoints").stats order: no small range (COCO labels no small people), all at 20 detections
KEYPOINT_STAT_NAMES = ("map", "map50", "map75", "map_medium", "map_large",
                       "mar", "mar50", "mar75", "mar_medium", "mar_large")

def oks_sigmas(num_keypoints: int, kpt_sigmas=None) -> np.ndarray:
    """(K,) float64 OKS sigmas: `kpt_sigmas`, else ops.keypoints.default_sigmas (COCO's for 17 joints)."""
    if kpt_sigmas is None:
        kpt_sigmas = default_sigmas(num_keypoints)
    sigmas = np.asarray(kpt_sigmas, np.float64).reshape(-1)
    if len(sigmas) != num_keypoints:
        raise FovealError(f"kpt_sigmas has {len(sigmas)} numbers but the keypoints have {num_keypoints} joints; "
                          f"give one per joint")
    if not (np.isfinite(sigmas) & (sigmas > 0)).all():
        raise FovealError(f"kpt_sigmas must all be positive numbers; got {sigmas.tolist()}")
    return sigmas


@dataclass
class DetectionEval:
    stats: dict[str, float]  # named as STAT_NAMES (KEYPOINT_STAT_NAMES for keypoints); -1 where COCO has no data
    per_class_ap: dict[str, float]  # AP@[.5:.95] per class name, -1 for classes without ground truth
    per_class_ap50: dict[str, float]
    precision: np.ndarray  # (T, R, K, A, M) = COCOeval.eval["precision"]: IoU, recall, class, area, maxDets
    recall_thresholds: np.ndarray  # (R,) = linspace(0, 1, 101)
    iou_thresholds: np.ndarray  # (T,) = linspace(.5, .95, 10); OKS thresholds for keypoints

    def pr_curve(self, iou_threshold: float = 0.5) -> np.ndarray:
        """(R, K) precision at each recall threshold per class, area all, most detections; -1 = no data."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou_threshold)))
        return self.precision[t, :, :, 0, -1]


def _numpy(x, dtype, shape=None) -> np.ndarray:
    """A tensor or array-like as a numpy array (detached, on the CPU)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=dtype)
    return x.reshape(shape) if shape is not None else x


def _check_labels(labels: np.ndarray, num_classes: int, where: str) -> None:
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise FovealError(f"{where} has label {labels.min() if labels.min() < 0 else labels.max()}, "
                          f"outside 0..{num_classes - 1} for {num_classes} classes")


def _ground_truth(gt: ImageAnnotations, num_classes: int, index: int):
    """(boxes (N, 4) float64, labels (N,), crowd (N,), difficult (N,), areas (N,) float64) of one image,
    checked; areas are ImageAnnotations.areas, or the boxes' where it is None."""
    boxes, labels = _numpy(gt.boxes, np.float64, (-1, 4)), _numpy(gt.labels, np.int64).reshape(-1)
    crowd = _numpy(gt.crowd, bool).reshape(-1) if len(gt.crowd) else np.zeros(len(labels), bool)
    difficult = _numpy(gt.difficult, bool).reshape(-1) if len(gt.difficult) else np.zeros(len(labels), bool)
    areas = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) if gt.areas is None
             else _numpy(gt.areas, np.float64).reshape(-1))
    counts = {"boxes": len(boxes), "crowd flags": len(crowd), "difficult flags": len(difficult), "areas": len(areas)}
    if any(count != len(labels) for count in counts.values()):
        raise FovealError(f"image {index} ({gt.image}) has {len(labels)} labels but "
                          + ", ".join(f"{count} {name}" for name, count in counts.items()) + "; they must match")
    _check_labels(labels, num_classes, f"ground truth of image {index} ({gt.image})")
    return boxes, labels, crowd, difficult, areas


def _detections(det: dict, num_classes: int, index: int):
    """(boxes (K, 4) float64, scores (K,), labels (K,)) of one image, checked."""
    boxes, scores = _numpy(det["boxes"], np.float64, (-1, 4)), _numpy(det["scores"], np.float64).reshape(-1)
    labels = _numpy(det["labels"], np.int64).reshape(-1)
    if not len(boxes) == len(scores) == len(labels):
        raise FovealError(f"detections of image {index} have {len(boxes)} boxes, {len(scores)} scores and "
                          f"{len(labels)} labels; they must match")
    _check_labels(labels, num_classes, f"detections of image {index}")
    return boxes, scores, labels


def _xywh(boxes: np.ndarray) -> list[list[float]]:
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], 1).tolist()


def _binary_masks(masks, count: int, item: ImageAnnotations, where: str) -> np.ndarray:
    """(count, H, W) bool numpy masks at the image's size from a tensor or array, checked."""
    if masks is None:
        raise FovealError(f"{where} has no masks; iou_type 'segm' needs instance masks")
    if isinstance(masks, torch.Tensor):
        masks = masks.detach().cpu().numpy()
    masks = np.asarray(masks)
    if count == 0 and masks.size == 0:
        return np.zeros((0, item.height, item.width), bool)
    if masks.shape != (count, item.height, item.width):
        raise FovealError(f"{where} has masks of shape {masks.shape}, expected ({count}, {item.height}, "
                          f"{item.width}): one per object at the image's size")
    if masks.dtype.kind not in "bui":
        raise FovealError(f"{where} has {masks.dtype} masks; threshold them into bool or 0/1 uint8 first")
    return masks != 0


def _add_masks(annotations: list[dict], masks, item: ImageAnnotations, where: str) -> None:
    """Give each annotation its mask as 'segmentation' (COCO compressed RLE) and its pixel count as 'area'."""
    from faster_coco_eval.core import mask as coco_mask  # imported here: only evaluation needs it

    masks = _binary_masks(masks, len(annotations), item, where)  # (K, H, W)
    if not len(masks):
        return
    # encode reads (H, W, K) uint8 in Fortran order: COCO's RLE runs down the columns
    rles = coco_mask.encode(np.asfortranarray(np.moveaxis(masks, 0, -1).astype(np.uint8)))
    for annotation, rle, area in zip(annotations, rles, masks.sum((1, 2)).tolist()):
        annotation["segmentation"], annotation["area"] = rle, float(area)


def _keypoints(keypoints, count: int, num_keypoints: int | str, where: str) -> np.ndarray:
    """(count, K, 3) float64 keypoints from a tensor or array, checked."""
    if keypoints is None:
        raise FovealError(f"{where} has no keypoints; iou_type 'keypoints' needs them for every image")
    points = _numpy(keypoints, np.float64)
    if count == 0 and points.size == 0:
        return np.zeros((0, num_keypoints, 3))
    if points.shape != (count, num_keypoints, 3):
        raise FovealError(f"{where} has keypoints of shape {tuple(points.shape)}, expected ({count}, "
                          f"{num_keypoints}, 3): x, y and visibility (or score) of each joint of each object")
    return points


def _keypoint_count(ground_truth: list[ImageAnnotations], kpt_sigmas) -> int:
    """K, from the first image whose keypoints say it (an image without objects may not), else the sigmas'."""
    for item in ground_truth:
        if item.keypoints is not None and np.ndim(item.keypoints) == 3:
            return int(np.shape(item.keypoints)[1])
    return len(COCO_SIGMAS) if kpt_sigmas is None else len(kpt_sigmas)


def _coco_dicts(ground_truth, detections, classes, iou_type="bbox", num_keypoints=0) -> tuple[dict, list[dict]]:
    """(ground-truth dataset, results list) in COCO's format. Image, annotation and category ids
    start at 1: pycocotools reads a matched ground-truth id of 0 as 'unmatched', and 0 is falsy in
    its id filters, so class c is category c + 1 here."""
    images, annotations, results = [], [], []
    for i, (gt, det) in enumerate(zip(ground_truth, detections), start=1):
        images.append({"id": i, "width": int(gt.width), "height": int(gt.height)})
        boxes, labels, crowd, difficult, areas = _ground_truth(gt, len(classes), i - 1)
        truths = [{"image_id": i, "category_id": label + 1, "bbox": box, "area": area, "iscrowd": int(c)}
                  for box, label, c, area in zip(_xywh(boxes), labels.tolist(), crowd.tolist(), areas.tolist())]
        det_boxes, scores, det_labels = _detections(det, len(classes), i - 1)
        found = [{"image_id": i, "category_id": label + 1, "score": score}
                 for score, label in zip(scores.tolist(), det_labels.tolist())]
        if iou_type == "segm":
            _add_masks(truths, gt.masks, gt, f"ground truth of image {i - 1} ({gt.image})")  # area: pixel count
            if gt.areas is not None:  # but COCO's own area where known: pycocotools reads it in segm too
                for truth, area in zip(truths, areas.tolist()):
                    truth["area"] = area
            # no 'bbox' on mask results: COCO's loadRes would then take a detection's area from its
            # box instead of its mask (detectron2 drops it for the same reason)
            _add_masks(found, det.get("masks"), gt, f"detections of image {i - 1}")
        else:
            for result, box in zip(found, _xywh(det_boxes)):
                result["bbox"] = box  # for keypoints too: loadRes then takes a result's area from its box
        if iou_type == "keypoints":
            points = _keypoints(gt.keypoints, len(truths), num_keypoints, f"ground truth of image {i - 1} ({gt.image})")
            for truth, joints, hard in zip(truths, points, difficult.tolist()):
                truth["keypoints"] = joints.reshape(-1).tolist()
                # COCOeval ignores a ground truth with num_keypoints 0 (it still matches detections by OKS,
                # and those are ignored): COCO's unlabelled people, and here VOC's difficult rule, as area -1
                # gives it below for boxes (an area of -1 would break the OKS scale)
                truth["num_keypoints"] = 0 if hard else int((joints[:, 2] > 0).sum())
            found_points = _keypoints(det.get("keypoints"), len(found), num_keypoints, f"detections of image {i - 1}")
            for result, joints in zip(found, found_points):
                result["keypoints"] = joints.reshape(-1).tolist()
        for truth, hard in zip(truths, difficult.tolist()):
            if hard and iou_type != "keypoints":
                # VOC's difficult rule, in COCOeval's terms: a ground truth outside the area range is still
                # matched by plain IoU, and the detections matched to it are ignored, not false positives;
                # nor is it counted as one to find. Area -1 is outside every range. COCO's `ignore` key
                # cannot carry this: pycocotools and faster-coco-eval both overwrite it with iscrowd.
                truth["area"] = -1.0
            annotations.append({"id": len(annotations) + 1, **truth})
        results.extend(found)
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(classes)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _mean_valid(values: np.ndarray) -> float:
    """The mean of entries > -1, or -1 when there are none (as COCOeval.summarize)."""
    valid = values[values > -1]
    return float(valid.mean()) if valid.size else -1.0


def coco_evaluate(ground_truth: list[ImageAnnotations], detections: list[dict], classes: list[str],
                  iou_type: str = "bbox", verbose: bool = False, kpt_sigmas=None) -> DetectionEval:
    """COCO mAP of `detections` against `ground_truth`, the numbers pycocotools' COCOeval gives.

    detections[i] belongs to ground_truth[i] and holds boxes (K, 4) xyxy pixels, scores (K,) and
    labels (K,) indexing `classes` (torch tensors or numpy). Crowd objects are COCO's iscrowd regions.
    Difficult objects follow VOC's rule: a detection matched to one (by IoU) is neither a true nor a
    false positive, and they are not counted among the objects to find. COCO's matching stays, where
    VOC's devkit differs: a detection takes the free object of highest IoU among the non-difficult
    ones over the threshold, and a difficult one only when there is none (VOC: the object of highest
    IoU of all), and a difficult object takes one detection, so a second one is a false positive
    (VOC ignores every detection whose best object is difficult).
    iou_type "bbox" matches boxes; a ground truth's area, for the small/medium/large ranges, is
    ImageAnnotations.areas (COCO's own `area`, the segment's for COCO data) where given, else w * h.
    iou_type "segm" matches instance masks, as COCOeval(iouType="segm"): the ground truth's come from
    ImageAnnotations.masks (N, H, W) and detections[i]["masks"] is (K, H, W) bool or 0/1 (tensor or
    numpy) at the image's original size; areas are the masks' pixel counts, the ground truth's
    ImageAnnotations.areas where given.
    iou_type "keypoints" matches by OKS, as COCOeval(iouType="keypoints"): ImageAnnotations.keypoints
    (N, J, 3) against detections[i]["keypoints"] (K, J, 3) x, y pixels and a per-joint score (unused
    by OKS), with per-joint `kpt_sigmas` (see oks_sigmas: COCO's when J is 17). The OKS scale is the
    ground truth's area (as for boxes); a detection's area, which ranges are judged by, is its box's;
    objects without a labelled joint (v > 0) are ignored, as COCO's num_keypoints 0, and so are
    difficult ones; stats are KEYPOINT_STAT_NAMES, at COCO's 20 detections per image.
    verbose prints COCO's usual summary table.
    """
    from faster_coco_eval import COCO, COCOeval_faster  # imported here: only evaluation needs it

    if iou_type not in IOU_TYPES:
        raise FovealError(f"iou_type '{iou_type}' is not supported; use one of {', '.join(IOU_TYPES)}"
                          f"{did_you_mean(iou_type, IOU_TYPES)}")
    if len(detections) != len(ground_truth):
        raise FovealError(f"{len(detections)} detection entries for {len(ground_truth)} images; need one per image")
    num_keypoints = _keypoint_count(ground_truth, kpt_sigmas) if iou_type == "keypoints" else 0
    sigmas = oks_sigmas(num_keypoints, kpt_sigmas) if iou_type == "keypoints" else None
    dataset, results = _coco_dicts(ground_truth, detections, classes, iou_type, num_keypoints)
    say = print if verbose else (lambda *args, **kwargs: None)
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(dataset, print_function=say)
        evaluator = COCOeval_faster(coco_gt, coco_gt.loadRes(results), iou_type, print_function=say,
                                    kpt_oks_sigmas=sigmas)
        # for keypoints faster-coco-eval keeps only the categories with ground truth, pycocotools all of them:
        # all keeps precision's class axis aligned with `classes` (the stats are the same either way)
        evaluator.params.catIds = sorted(coco_gt.getCatIds())
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = np.asarray(evaluator.eval["precision"], np.float64)  # (T, R, K, A, M)
    ap = [_mean_valid(precision[:, :, k, 0, -1]) for k in range(len(classes))]
    ap50 = [_mean_valid(precision[0, :, k, 0, -1]) for k in range(len(classes))]
    names = KEYPOINT_STAT_NAMES if iou_type == "keypoints" else STAT_NAMES
    return DetectionEval(
        stats={name: float(value) for name, value in zip(names, evaluator.stats[:len(names)])},
        per_class_ap=dict(zip(classes, ap)), per_class_ap50=dict(zip(classes, ap50)), precision=precision,
        recall_thresholds=np.asarray(evaluator.params.recThrs), iou_thresholds=np.asarray(evaluator.params.iouThrs))


def coco_results(ground_truth: list[ImageAnnotations], detections: list[dict], classes: list[str],
                 category_ids: list[int] | None = None) -> list[dict]:
    """`detections` (as coco_evaluate takes them) in COCO's results format, one entry per box: the source's
    image_id (result_image_id) and category_id (category_ids[label], else the label), bbox x, y, w, h in
    pixels unrounded, score. pycocotools' loadRes reads it against the source's own JSON. Detections with
    masks (instance segmentation, at each image's size) give `segmentation` (COCO's compressed RLE) instead
    of `bbox`: given a bbox, loadRes would take a result's area from its box, not its mask. Detections with
    keypoints (M, J, 3) (pose) add `keypoints` [x, y, score] * J, COCO's keypoint results, keeping the bbox."""
    ids = category_ids or list(range(len(classes)))
    results = []
    for i, (item, det) in enumerate(zip(ground_truth, detections)):
        boxes, scores, labels = _detections(det, len(classes), i)
        image_id = result_image_id(item, i)
        entries = [{"image_id": image_id, "category_id": ids[label], "bbox": box, "score": score}
                   for box, score, label in zip(_xywh(boxes), scores.tolist(), labels.tolist())]
        if det.get("masks") is not None:
            _add_masks(entries, det["masks"], item, f"detections of image {i}")
            for entry in entries:
                del entry["bbox"], entry["area"]  # loadRes computes the area from the mask
                rle = entry["segmentation"]
                entry["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}  # JSON text
        if det.get("keypoints") is not None and entries:
            points = _numpy(det["keypoints"], np.float64)
            points = _keypoints(points, len(entries), points.shape[1] if points.ndim == 3 else "J",
                                f"detections of image {i}")
            for entry, joints in zip(entries, points):
                entry["keypoints"] = joints.reshape(-1).tolist()
        results += entries
    return results


def _covered_by_crowd(boxes: np.ndarray, crowd_boxes: np.ndarray, threshold: float) -> np.ndarray:
    """(D,) True where intersection / own area >= threshold with some crowd box (COCO's crowd IoU)."""
    if not len(boxes) or not len(crowd_boxes):
        return np.zeros(len(boxes), bool)
    boxes, crowd_boxes = torch.from_numpy(boxes), torch.from_numpy(crowd_boxes)
    lt = torch.max(boxes[:, None, :2], crowd_boxes[None, :, :2])  # (D, crowd, 2)
    rb = torch.min(boxes[:, None, 2:], crowd_boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)  # (D, crowd)
    return (inter / box_area(boxes)[:, None].clamp(min=1e-12) >= threshold).any(1).numpy()


def detection_confusion_matrix(ground_truth: list[ImageAnnotations], detections: list[dict], num_classes: int,
                               iou_threshold: float = 0.5, conf_threshold: float = 0.25) -> np.ndarray:
    """(C + 1, C + 1) int64 counts: rows true class, columns predicted class.

    Row C (background) counts false positives, column C (background) missed ground truth; [C, C] is 0.
    Per image, detections with score >= conf_threshold are matched to ground truth of any class
    greedily: (ground truth, detection) pairs with IoU >= iou_threshold are taken from the highest
    IoU down (ties by ground-truth, then detection index), each box used at most once, as Ultralytics does (it uses IoU >
    threshold and a transposed matrix). Crowd and difficult ground truths are never counted; an
    unmatched detection covering a crowd region (intersection / detection area >= iou_threshold, as
    COCO) or overlapping a difficult object (IoU >= iou_threshold, as VOC) is ignored rather than
    counted as a false positive.
    """
    matrix = np.zeros((num_classes + 1, num_classes + 1), np.int64)
    if len(detections) != len(ground_truth):
        raise FovealError(f"{len(detections)} detection entries for {len(ground_truth)} images; need one per image")
    for i, (gt, det) in enumerate(zip(ground_truth, detections)):
        gt_boxes, gt_labels, crowd, difficult, _ = _ground_truth(gt, num_classes, i)
        det_boxes, scores, det_labels = _detections(det, num_classes, i)
        det_boxes, det_labels = det_boxes[scores >= conf_threshold], det_labels[scores >= conf_threshold]
        real_boxes, real_labels = gt_boxes[~crowd & ~difficult], gt_labels[~crowd & ~difficult]
        iou = box_iou(torch.from_numpy(real_boxes), torch.from_numpy(det_boxes)).numpy()  # (G, D)
        g_idx, d_idx = np.nonzero(iou >= iou_threshold)
        order = np.argsort(-iou[g_idx, d_idx], kind="stable")
        gt_used, det_used = np.zeros(len(real_labels), bool), np.zeros(len(det_labels), bool)
        for g, d in zip(g_idx[order].tolist(), d_idx[order].tolist()):
            if not gt_used[g] and not det_used[d]:
                gt_used[g] = det_used[d] = True
                matrix[real_labels[g], det_labels[d]] += 1
        np.add.at(matrix[:, num_classes], real_labels[~gt_used], 1)
        on_difficult = (box_iou(torch.from_numpy(gt_boxes[difficult]), torch.from_numpy(det_boxes)).numpy()
                        >= iou_threshold).any(0)  # (D,)
        false_positive = ~det_used & ~on_difficult & ~_covered_by_crowd(det_boxes, gt_boxes[crowd], iou_threshold)
        np.add.at(matrix[num_classes], det_labels[false_positive], 1)
    return matrix
