"""coco_evaluate against pycocotools' COCOeval run directly, plus hand-computed cases."""

import contextlib
import io
import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from foveal.data.detection import ImageAnnotations
from foveal.data.formats import read_detection_data
from foveal.errors import FovealError
from foveal.metrics.detection import STAT_NAMES, coco_evaluate, detection_confusion_matrix

CLASSES = ["cat", "dog", "bird", "fish"]


class COCOevalKeepingIgnore(COCOeval):
    """pycocotools' COCOeval, except that a ground truth's own `ignore` flag counts (stock _prepare overwrites
    it with iscrowd). In evaluateImg an ignore=1, iscrowd=0 object is matched by plain IoU and detections
    matched to it are ignored: VOC's difficult rule, which foveal must give."""

    def __init__(self, coco_gt, coco_dt, iou_type):
        self.flagged = {a["id"] for a in coco_gt.dataset["annotations"] if a.get("ignore")}  # before _prepare
        super().__init__(coco_gt, coco_dt, iou_type)

    def _prepare(self):
        super()._prepare()
        for truths in self._gts.values():
            for truth in truths:
                truth["ignore"] = int(truth["ignore"] or truth["id"] in self.flagged)


def reference(ground_truth, detections, classes):
    """pycocotools on COCO dicts built by hand: (12 stats, per-class AP, per-class AP50). Difficult objects
    are ignore=1, iscrowd=0; areas are ImageAnnotations.areas where given, else w * h."""
    images, annotations, results = [], [], []
    for i, (gt, det) in enumerate(zip(ground_truth, detections), start=1):
        images.append({"id": i, "width": gt.width, "height": gt.height})
        difficult = gt.difficult if len(gt.difficult) else np.zeros(len(gt.labels), bool)
        areas = [None] * len(gt.labels) if gt.areas is None else gt.areas.tolist()
        for (x1, y1, x2, y2), label, crowd, hard, area in zip(gt.boxes.astype(float).tolist(), gt.labels, gt.crowd,
                                                               difficult, areas):
            w, h = x2 - x1, y2 - y1
            annotations.append({"id": len(annotations) + 1, "image_id": i, "category_id": int(label) + 1,
                                "bbox": [x1, y1, w, h], "area": w * h if area is None else area,
                                "iscrowd": int(crowd), "ignore": int(hard)})
        for (x1, y1, x2, y2), score, label in zip(np.asarray(det["boxes"], float).tolist(), det["scores"],
                                                  det["labels"]):
            results.append({"image_id": i, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(score)})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(classes)]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {"images": images, "annotations": annotations, "categories": categories}
        coco_gt.createIndex()
        if results:
            coco_dt = coco_gt.loadRes(results)
        else:  # loadRes fails on an empty list
            coco_dt = COCO()
            coco_dt.dataset = {"images": images, "annotations": [], "categories": categories}
            coco_dt.createIndex()
        evaluator = COCOevalKeepingIgnore(coco_gt, coco_dt, "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, K)
    ap = [p[p > -1].mean() if (p > -1).any() else -1 for p in precision.transpose(2, 0, 1)]
    ap50 = [p[p > -1].mean() if (p > -1).any() else -1 for p in precision[0].T]
    return evaluator.stats, ap, ap50


def random_case(seed, num_images=8, classes=CLASSES, absent_class=None, crowd_rate=0.1, many=False):
    """Random ground truth over small, medium and large sizes (some exactly 32 x 32 or 16 x 64 = 32**2)
    and detections: jittered or exact copies, wrong labels, false positives, scores with many ties."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for _ in range(num_images):
        n = int(rng.integers(0, 9))
        size = np.exp(rng.uniform(np.log(4), np.log(300), (n, 2)))
        size[rng.random(n) < 0.25] = rng.choice([[32.0, 32.0], [16.0, 64.0]])
        corner = np.round(rng.random((n, 2)) * (np.array([640, 480]) - size).clip(1))
        boxes = np.concatenate([corner, corner + size], 1).astype(np.float32)
        labels = rng.integers(0, len(classes), n)
        if absent_class is not None:
            labels[labels == absent_class] = (absent_class + 1) % len(classes)
        ground_truth.append(ImageAnnotations("", 640, 480, boxes, labels, rng.random(n) < crowd_rate))
        copies = np.repeat(np.arange(n), rng.integers(0, 3, n))
        jitter = rng.normal(0, 0.08, (len(copies), 4)) * np.tile(size[copies], 2) * (rng.random((len(copies), 1)) < .7)
        det_labels = np.where(rng.random(len(copies)) < 0.1, rng.integers(0, len(classes), len(copies)), labels[copies])
        extra = 150 if many else int(rng.integers(0, 4))
        corner = rng.random((extra, 2)) * 500
        false = np.concatenate([corner, corner + rng.uniform(2, 140, (extra, 2))], 1)
        det_boxes = np.concatenate([boxes[copies] + jitter, false]).astype(np.float32)
        det_labels = np.concatenate([det_labels, rng.integers(0, len(classes), extra) * (not many)])
        scores = np.round(rng.random(len(det_boxes)), 1)  # ties, within and across images
        detections.append({"boxes": torch.from_numpy(det_boxes), "scores": scores, "labels": det_labels})
    return ground_truth, detections


def assert_agrees(ground_truth, detections, classes=CLASSES):
    ours = coco_evaluate(ground_truth, detections, classes)
    stats, ap, ap50 = reference(ground_truth, detections, classes)
    assert list(ours.stats) == list(STAT_NAMES)
    np.testing.assert_allclose(list(ours.stats.values()), stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(list(ours.per_class_ap.values()), ap, rtol=0, atol=1e-9)
    np.testing.assert_allclose(list(ours.per_class_ap50.values()), ap50, rtol=0, atol=1e-9)
    return ours


@pytest.mark.parametrize("seed", range(6))
def test_random_cases_agree_with_pycocotools(seed):
    ground_truth, detections = random_case(seed, absent_class=3 if seed % 2 else None)
    result = assert_agrees(ground_truth, detections)
    assert result.precision.shape == (10, 101, 4, 4, 3) and result.pr_curve().shape == (101, 4)
    assert np.array_equal(result.recall_thresholds, np.linspace(0, 1, 101))
    if seed % 2:
        assert result.per_class_ap["fish"] == -1 and result.per_class_ap50["fish"] == -1
        valid = [v for v in result.per_class_ap.values() if v > -1]
        assert result.stats["map"] == pytest.approx(np.mean(valid), abs=1e-12)


def test_all_area_ranges_and_exact_32_squared_occur():
    areas = np.concatenate([np.prod(g.boxes[:, 2:] - g.boxes[:, :2], 1) for g in random_case(0)[0]])
    assert (areas < 32**2).any() and (areas == 32**2).any() and (areas > 96**2).any()
    assert ((areas > 32**2) & (areas < 96**2)).any()


def test_no_detections_crowds_many_detections():
    ground_truth, _ = random_case(7)
    empty = [{"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in ground_truth]
    result = assert_agrees(ground_truth, empty)
    assert result.stats["map"] == 0 and result.stats["mar100"] == 0
    assert_agrees(*random_case(8, crowd_rate=0.5))
    ground_truth, detections = random_case(9, num_images=3, many=True)  # > 100 detections of class 0
    assert max(len(d["boxes"]) for d in detections) > 100
    assert_agrees(ground_truth, detections)


def test_perfect_detections_and_absent_class():
    ground_truth, _ = random_case(10, absent_class=2, crowd_rate=0)
    perfect = [{"boxes": g.boxes, "scores": np.ones(len(g.boxes)), "labels": g.labels} for g in ground_truth]
    first = perfect[0]  # plus one false positive of bird, a class without ground truth
    perfect[0] = {"boxes": np.concatenate([first["boxes"], [[1.0, 1, 30, 30]]]),
                  "scores": np.append(first["scores"], 0.01), "labels": np.append(first["labels"], 2)}
    result = assert_agrees(ground_truth, perfect)
    assert result.stats["map"] == 1.0 and result.stats["map50"] == 1.0 and result.stats["mar100"] == 1.0
    assert result.per_class_ap == {"cat": 1.0, "dog": 1.0, "bird": -1.0, "fish": 1.0}  # bird: only a false positive


def test_bad_input_is_a_user_error():
    ground_truth, detections = random_case(0, num_images=2)
    with pytest.raises(FovealError, match="one per image"):
        coco_evaluate(ground_truth, detections[:1], CLASSES)
    with pytest.raises(FovealError, match="outside 0..1"):
        coco_evaluate(ground_truth, detections, CLASSES[:2])


def test_confusion_matrix_by_hand():
    gt = ImageAnnotations("", 100, 100, np.array([[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60],
                                                  [70, 70, 99, 99]], np.float32),
                          np.array([0, 1, 2, 0]), np.array([False, False, False, True]))
    det = {"boxes": torch.tensor([[0, 0, 10, 10], [0, 0, 10, 9], [21, 21, 40, 40], [80, 0, 90, 10],
                                  [50, 50, 60, 60], [75, 75, 85, 85]], dtype=torch.float32),
           "scores": torch.tensor([0.5, 0.9, 0.8, 0.7, 0.1, 0.6]), "labels": torch.tensor([0, 2, 0, 2, 2, 1])}
    matrix = detection_confusion_matrix([gt], [det], num_classes=3)
    # box 0: the exact detection (IoU 1) wins over the higher-scoring one (IoU 0.9), which becomes a
    # false positive of class 2; box 1 is taken for class 0; box 2's only detection is under conf 0.25
    # so it is missed; the far detection is a false positive; the one inside the crowd box is ignored
    expected = np.array([[1, 0, 0, 0],
                         [1, 0, 0, 0],
                         [0, 0, 0, 1],
                         [0, 0, 2, 0]])
    assert np.array_equal(matrix, expected)
    assert detection_confusion_matrix([gt], [det], 3, conf_threshold=0.05)[2].tolist() == [0, 0, 1, 0]


def with_difficult(ground_truth, detections, seed):
    """About a third of the non-crowd objects made difficult, each with detections where VOC's rule and
    COCO's crowd rule part: one inside it (IoU 0.25, all of it inside), one shifted by a fifth (IoU 0.47,
    0.64 of it inside) and a duplicate; and random COCO areas (0.3 to 3 times w * h) on every other image."""
    rng = np.random.default_rng(seed)
    for k, (gt, det) in enumerate(zip(ground_truth, detections)):
        gt.difficult = (rng.random(len(gt.labels)) < 0.3) & ~gt.crowd
        if k % 2:
            box_areas = np.prod(gt.boxes[:, 2:] - gt.boxes[:, :2], 1).astype(np.float64)
            gt.areas = box_areas * rng.uniform(0.3, 3, len(gt.labels))
        hard, labels = gt.boxes[gt.difficult].astype(np.float64), gt.labels[gt.difficult]
        size = hard[:, 2:] - hard[:, :2]
        inside = np.concatenate([hard[:, :2] + size / 4, hard[:, 2:] - size / 4], 1)
        shifted = hard + np.tile(size * 0.2, 2)
        added = np.concatenate([inside, shifted, hard])
        det["boxes"] = np.concatenate([np.asarray(det["boxes"], np.float64), added])
        det["labels"] = np.concatenate([det["labels"], np.tile(labels, 3)])
        det["scores"] = np.concatenate([det["scores"], np.round(rng.random(len(added)), 1)])
    return ground_truth, detections


@pytest.mark.parametrize("seed", range(4))
def test_difficult_objects_and_areas_agree_with_pycocotools_ignore_flag(seed):
    ground_truth, detections = with_difficult(*random_case(20 + seed, crowd_rate=0.1 * (seed % 2)), seed)
    assert sum(g.difficult.sum() for g in ground_truth) > 3
    assert_agrees(ground_truth, detections)


def test_difficult_follows_voc_rule_not_crowd_rule():
    """A detection lying inside a difficult object with IoU 0.16 (intersection over its own area 1):
    VOC's rule makes it a false positive, COCO's crowd rule would ignore it."""
    boxes = np.array([[0, 0, 50, 50], [100, 100, 200, 200]], np.float32)
    det = {"boxes": np.array([[110, 110, 150, 150], [0, 0, 50, 50]], np.float32), "scores": np.array([.95, .9]),
           "labels": np.array([0, 0])}
    gt = ImageAnnotations("", 320, 240, boxes, np.array([0, 0]), np.zeros(2, bool), difficult=np.array([False, True]))
    voc = assert_agrees([gt], [det], ["cat"])
    # precision 0 at the false positive, then 1/2 at recall 1: AP 0.5 at every IoU threshold
    assert voc.stats["map"] == pytest.approx(0.5, abs=1e-12) and voc.stats["mar100"] == 1.0
    crowd = coco_evaluate([replace(gt, crowd=gt.difficult, difficult=np.zeros(2, bool))], [det], ["cat"])
    assert crowd.stats["map"] == 1.0  # the crowd rule ignores it
    # a detection of the difficult object itself is ignored: the TP alone scores AP 1
    det["boxes"][0] = [100, 100, 200, 200]
    assert coco_evaluate([gt], [det], ["cat"]).stats["map"] == 1.0
    # the difficult object is not one to find: with no detection of it, recall is still 1
    only_a = {key: value[1:] for key, value in det.items()}
    assert coco_evaluate([gt], [only_a], ["cat"]).stats["mar100"] == 1.0


def test_confusion_matrix_difficult_by_voc_rule():
    gt = ImageAnnotations("", 320, 240, np.array([[0, 0, 50, 50], [100, 100, 200, 200]], np.float32),
                          np.array([0, 1]), np.zeros(2, bool), difficult=np.array([False, True]))
    det = {"boxes": np.array([[110, 110, 150, 150], [100, 100, 190, 200]], np.float32),
           "scores": np.array([.9, .9]), "labels": np.array([1, 1])}
    # inside the difficult box with IoU 0.16: a false positive; IoU 0.9 with it: ignored; the difficult
    # object is never missed, the plain one is
    assert detection_confusion_matrix([gt], [det], 2).tolist() == [[0, 0, 1], [0, 0, 0], [0, 1, 0]]


def test_coco_file_areas_decide_small_medium_large_as_pycocotools(tmp_path):
    """A COCO file whose `area`s (as COCO's segment areas) put objects in other size ranges than w * h:
    foveal's reader + evaluation equal pycocotools on the same file."""
    from PIL import Image

    rng = np.random.default_rng(0)
    # (w, h, area): 40x40 but small, 20x20 but medium, 100x100 but medium, 80x80 but large, and some
    # where both agree, one exactly 32**2
    shapes = [(40, 40, 600.0), (20, 20, 1500.0), (100, 100, 5000.0), (80, 80, 9500.0), (30, 30, 1024.0),
              (60, 30, 1700.0), (120, 90, 10500.0), (12, 10, 110.0), (50, 50, 900.0), (25, 30, 1100.0)]
    images, annotations, results, detections = [], [], [], []
    for image_id in (7, 9, 12):
        Image.new("RGB", (320, 240)).save(tmp_path / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 320, "height": 240})
        boxes, labels, scores = [], [], []
        for w, h, area in [shapes[k] for k in rng.choice(len(shapes), 6, replace=False)]:
            x, y = rng.integers(0, 320 - w), rng.integers(0, 240 - h)
            category = int(rng.choice([3, 8]))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                                "bbox": [int(x), int(y), w, h], "area": area, "iscrowd": int(rng.random() < 0.1)})
            for _ in range(int(rng.integers(0, 3))):  # jittered detections, some of the wrong category
                box = np.array([x, y, x + w, y + h]) + rng.normal(0, 0.1, 4) * [w, h, w, h]
                boxes.append(box)
                labels.append(category if rng.random() < 0.9 else 11 - category)
                scores.append(float(rng.random()))
        for _ in range(2):  # false positives
            x, y, w, h = rng.uniform(0, 200), rng.uniform(0, 140), rng.uniform(5, 110), rng.uniform(5, 90)
            boxes.append(np.array([x, y, x + w, y + h]))
            labels.append(int(rng.choice([3, 8])))
            scores.append(float(rng.random()))
        results += [{"image_id": image_id, "category_id": c, "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s}
                    for (x1, y1, x2, y2), c, s in zip(np.array(boxes).tolist(), labels, scores)]
        detections.append({"boxes": np.array(boxes), "scores": np.array(scores),
                           "labels": np.array([{3: 0, 8: 1}[c] for c in labels])})
    categories = [{"id": 3, "name": "cat"}, {"id": 8, "name": "dog"}]
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                   "categories": categories}))
    data = read_detection_data(f"coco:{tmp_path / 'ann.json'},{tmp_path}")
    ours = coco_evaluate(data.splits["train"], detections, data.classes)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "ann.json"))
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    np.testing.assert_allclose(list(ours.stats.values()), evaluator.stats, rtol=0, atol=1e-9)
    by_box_area = coco_evaluate([replace(item, areas=None) for item in data.splits["train"]], detections, data.classes)
    for name in ("map_small", "map_medium", "map_large"):
        assert ours.stats[name] > -1 and abs(ours.stats[name] - by_box_area.stats[name]) > 0.01, name
