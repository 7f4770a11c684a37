"""Keypoint metrics: coco_evaluate(iou_type="keypoints") against pycocotools' COCOeval run directly, COCO keypoint
results read back by pycocotools, and PCK / NME against numpy written out here."""

import contextlib
import io
import json

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from foveal.data.detection import ImageAnnotations
from foveal.errors import FovealError
from foveal.metrics.detection import KEYPOINT_STAT_NAMES, coco_evaluate, coco_results, oks_sigmas
from foveal.metrics.keypoints import landmark_metrics

CLASSES = ["person", "robot"]
FIVE_SIGMAS = [0.03, 0.05, 0.05, 0.08, 0.11]
COCO_SIGMAS_17 = oks_sigmas(17).tolist()


def pose_case(seed, num_joints=17, num_images=6, crowd_rate=0.15, coco_areas=True):
    """Random people over small, medium and large sizes with joints inside their boxes, some joints unlabelled
    (v = 0) and some people with none labelled; crowds (most without keypoints, as COCO's); COCO areas (a
    fraction of the box, as a segment's) on every other image. Detections: jittered copies of people (noise in
    proportion to their size, so OKS spans the thresholds), false positives, per-joint scores, tied scores,
    and one image with more than COCO's 20 detections."""
    rng = np.random.default_rng(seed)
    ground_truth, detections = [], []
    for k in range(num_images):
        n = int(rng.integers(0, 8))
        size = np.exp(rng.uniform(np.log(12), np.log(300), (n, 2)))
        corner = np.round(rng.random((n, 2)) * (np.array([640, 480]) - size).clip(1))
        boxes = np.concatenate([corner, corner + size], 1).astype(np.float32)
        points = corner[:, None] + rng.random((n, num_joints, 2)) * size[:, None]
        visibility = rng.choice([0, 1, 2], (n, num_joints), p=[0.25, 0.25, 0.5])
        visibility[rng.random(n) < 0.15] = 0  # nobody labelled: COCO ignores them
        crowd = rng.random(n) < crowd_rate
        visibility[crowd & (rng.random(n) < 0.7)] = 0
        keypoints = np.concatenate([points * (visibility[..., None] > 0), visibility[..., None]], 2).astype(np.float32)
        areas = np.prod(size, 1) * rng.uniform(0.4, 0.9, n) if coco_areas and k % 2 else None
        labels = rng.integers(0, len(CLASSES), n)
        ground_truth.append(ImageAnnotations("", 640, 480, boxes, labels, crowd, areas=areas, keypoints=keypoints,
                                             image_id=100 + k))
        copies = np.repeat(np.arange(n), rng.integers(0, 3, n))
        spread = rng.uniform(0, 0.12, (len(copies), 1, 1)) * np.sqrt(np.prod(size[copies], 1))[:, None, None]
        found = points[copies] + rng.normal(0, 1, (len(copies), num_joints, 2)) * spread
        extra = 25 if k == 1 else int(rng.integers(0, 4))
        start = rng.random((extra, 1, 2)) * 400
        false = start + rng.random((extra, num_joints, 2)) * rng.uniform(10, 200, (extra, 1, 2))
        det_points = np.concatenate([found, false])
        det_boxes = np.concatenate([det_points.min(1), det_points.max(1)], 1)
        det_boxes[: len(copies)] = boxes[copies] + rng.normal(0, 2, (len(copies), 4))
        det_keypoints = np.concatenate([det_points, rng.random((len(det_points), num_joints, 1))], 2)
        det_labels = np.concatenate([np.where(rng.random(len(copies)) < 0.1, 1 - labels[copies], labels[copies]),
                                     rng.integers(0, len(CLASSES), extra)])
        scores = np.round(rng.random(len(det_points)), 1)  # ties
        detections.append({"boxes": torch.from_numpy(det_boxes).float(), "scores": scores, "labels": det_labels,
                           "keypoints": torch.from_numpy(det_keypoints).float()})
    return ground_truth, detections


def flat(joints) -> list[float]:
    return np.asarray(joints, np.float64).reshape(-1).tolist()


def reference_dicts(ground_truth, detections):
    """COCO ground-truth dict and results written by hand from foveal's form, with the source's image ids."""
    images, annotations, results = [], [], []
    for gt, det in zip(ground_truth, detections):
        images.append({"id": gt.image_id, "width": gt.width, "height": gt.height})
        areas = gt.areas if gt.areas is not None else np.prod(gt.boxes[:, 2:] - gt.boxes[:, :2], 1)
        for (x1, y1, x2, y2), label, crowd, area, joints in zip(gt.boxes.astype(float).tolist(), gt.labels,
                                                                 gt.crowd, areas, gt.keypoints):
            annotations.append({"id": len(annotations) + 1, "image_id": gt.image_id, "category_id": int(label) + 1,
                                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": float(area), "iscrowd": int(crowd),
                                "keypoints": flat(joints), "num_keypoints": int((joints[:, 2] > 0).sum())})
        for (x1, y1, x2, y2), score, label, joints in zip(np.asarray(det["boxes"], float).tolist(), det["scores"],
                                                          det["labels"], np.asarray(det["keypoints"])):
            results.append({"image_id": gt.image_id, "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "score": float(score), "keypoints": flat(joints)})
    categories = [{"id": c + 1, "name": name} for c, name in enumerate(CLASSES)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def pycocotools_eval(coco_gt, results, sigmas=None) -> COCOeval:
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "keypoints")
        if sigmas is not None:
            evaluator.params.kpt_oks_sigmas = np.array(sigmas)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return evaluator


def reference(ground_truth, detections, sigmas=None):
    """pycocotools' 10 keypoint stats and AP per class; its own default sigmas when `sigmas` is None."""
    dataset, results = reference_dicts(ground_truth, detections)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = dataset
        coco_gt.createIndex()
    evaluator = pycocotools_eval(coco_gt, results, sigmas)
    precision = evaluator.eval["precision"][:, :, :, 0, -1]  # (T, R, classes)
    per_class = [p[p > -1].mean() if (p > -1).any() else -1 for p in precision.transpose(2, 0, 1)]
    return evaluator.stats, per_class


def assert_agrees(ground_truth, detections, sigmas=None):
    ours = coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints", kpt_sigmas=sigmas)
    stats, per_class = reference(ground_truth, detections, sigmas)
    assert list(ours.stats) == list(KEYPOINT_STAT_NAMES)
    np.testing.assert_allclose(list(ours.stats.values()), stats, rtol=0, atol=1e-9)
    np.testing.assert_allclose(list(ours.per_class_ap.values()), per_class, rtol=0, atol=1e-9)
    return ours


@pytest.mark.parametrize("seed", range(4))
def test_seventeen_coco_joints_agree_with_pycocotools(seed):
    ground_truth, detections = pose_case(seed)
    ours = assert_agrees(ground_truth, detections)  # pycocotools with its own default sigmas
    assert 0.05 < ours.stats["map"] < 0.95 and ours.stats["map_medium"] > -1 and ours.stats["map_large"] > -1
    assert ours.precision.shape == (10, 101, 2, 3, 1)


@pytest.mark.parametrize("seed", range(3))
def test_five_joints_with_given_sigmas_agree_with_pycocotools(seed):
    ground_truth, detections = pose_case(10 + seed, num_joints=5, crowd_rate=0.3, coco_areas=seed != 1)
    ours = assert_agrees(ground_truth, detections, FIVE_SIGMAS)
    wider = coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints",
                          kpt_sigmas=np.array(FIVE_SIGMAS) * 3)
    assert wider.stats["map"] > ours.stats["map"] + 0.05  # the sigmas are used: looser ones score higher


def test_perfect_keypoints_score_one_and_unlabelled_people_are_ignored():
    ground_truth, _ = pose_case(20, crowd_rate=0)
    perfect = []
    for gt in ground_truth:
        keep = (gt.keypoints[:, :, 2] > 0).any(1)  # people without labelled joints get no detection
        perfect.append({"boxes": gt.boxes[keep], "scores": np.ones(keep.sum()), "labels": gt.labels[keep],
                        "keypoints": gt.keypoints[keep]})
    assert sum((~(g.keypoints[:, :, 2] > 0).any(1)).sum() for g in ground_truth) > 0
    ours = assert_agrees(ground_truth, perfect)
    assert ours.stats["map"] == 1.0 and ours.stats["mar"] == 1.0


def test_a_class_without_ground_truth_keeps_its_place():
    """Robots only detected, never labelled: -1 for robot, and person's AP in person's place."""
    ground_truth, detections = pose_case(21)
    for gt in ground_truth:
        gt.labels = np.zeros_like(gt.labels)
    ours = assert_agrees(ground_truth, detections)
    assert ours.per_class_ap["robot"] == -1 and ours.per_class_ap["person"] == pytest.approx(ours.stats["map"])
    assert any((np.asarray(d["labels"]) == 1).any() for d in detections)


def test_difficult_people_are_ignored_like_unlabelled_ones():
    """Detections, best first: of the difficult person, a false positive, of the plain person. The first counts
    neither way (VOC's rule) and the difficult person is not one to find: precision 1/2 at recall 1, AP 0.5.
    Scored as plain people, AP would be (51 + 50 * 2/3) / 101; with the first a false positive, 1/3."""
    joints = np.array([[[10, 10, 2], [50, 10, 2], [30, 60, 1]], [[110, 110, 2], [150, 110, 2], [130, 160, 2]]],
                      np.float32)
    boxes = np.array([[0, 0, 60, 70], [100, 100, 160, 170]], np.float32)
    gt = ImageAnnotations("", 320, 240, boxes, np.array([0, 0]), np.zeros(2, bool), keypoints=joints,
                          difficult=np.array([False, True]))
    false = np.array([[[250, 20, 1], [290, 20, 1], [270, 80, 1]]], np.float32)
    det = {"boxes": np.stack([boxes[1], [250, 20, 290, 80], boxes[0]]), "scores": np.array([0.9, 0.85, 0.8]),
           "labels": np.array([0, 0, 0]), "keypoints": np.concatenate([joints[1:] + 1, false, joints[:1] + 1])}
    ours = coco_evaluate([gt], [det], ["person"], iou_type="keypoints", kpt_sigmas=[0.05] * 3)
    assert ours.stats["map"] == pytest.approx(0.5, abs=1e-12) and ours.stats["mar"] == 1.0
    gt.difficult = np.zeros(2, bool)
    plain = coco_evaluate([gt], [det], ["person"], iou_type="keypoints", kpt_sigmas=[0.05] * 3)
    assert plain.stats["map"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)


def test_results_read_back_by_pycocotools_give_the_same_numbers(tmp_path):
    ground_truth, detections = pose_case(30)
    ours = coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints")
    rows = coco_results(ground_truth, detections, CLASSES, category_ids=[1, 2])
    first = rows[0]
    assert sorted(first) == ["bbox", "category_id", "image_id", "keypoints", "score"] and len(first["keypoints"]) == 51
    first_found = next(d["keypoints"][0] for d in detections if len(d["keypoints"]))  # x, y, score of each joint
    np.testing.assert_array_equal(first["keypoints"], first_found.double().reshape(-1).numpy())
    dataset, _ = reference_dicts(ground_truth, detections)
    (tmp_path / "truth.json").write_text(json.dumps(dataset))
    (tmp_path / "predictions.json").write_text(json.dumps(rows))
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(tmp_path / "truth.json"))
    stats = pycocotools_eval(coco_gt, str(tmp_path / "predictions.json")).stats
    np.testing.assert_allclose(list(ours.stats.values()), stats, rtol=0, atol=1e-9)


def message(call) -> str:
    with pytest.raises(FovealError) as caught:
        call()
    return str(caught.value)


def test_sigma_rule_and_its_mistakes():
    assert oks_sigmas(17)[0] == np.array([.26]) / 10.0 and oks_sigmas(3, [0.1, 0.2, 0.3]).tolist() == [0.1, 0.2, 0.3]
    assert oks_sigmas(5).tolist() == [0.2] * 5  # another skeleton without its own: 1/K each (Ultralytics' rule)
    assert message(lambda: oks_sigmas(5, [0.1] * 4)) == ("kpt_sigmas has 4 numbers but the keypoints have 5 joints; "
                                                         "give one per joint")
    assert message(lambda: oks_sigmas(2, [0.1, 0])) == "kpt_sigmas must all be positive numbers; got [0.1, 0.0]"
    ground_truth, detections = pose_case(40, num_joints=5, num_images=2)
    assert (coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints").stats
            == coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints", kpt_sigmas=[0.2] * 5).stats)
    assert message(lambda: coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints",
                                         kpt_sigmas=COCO_SIGMAS_17)) == (
        "kpt_sigmas has 17 numbers but the keypoints have 5 joints; give one per joint")


def test_keypoint_shape_mistakes():
    ground_truth, detections = pose_case(41, num_joints=5, num_images=2)
    count = len(detections[0]["labels"])
    detections[0]["keypoints"] = detections[0]["keypoints"][:, :4]
    assert message(lambda: coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints",
                                         kpt_sigmas=FIVE_SIGMAS)) == (
        f"detections of image 0 has keypoints of shape ({count}, 4, 3), expected ({count}, 5, 3): "
        "x, y and visibility (or score) of each joint of each object")
    del detections[0]["keypoints"]
    assert message(lambda: coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints",
                                         kpt_sigmas=FIVE_SIGMAS)) == (
        "detections of image 0 has no keypoints; iou_type 'keypoints' needs them for every image")
    ground_truth[0].keypoints = None
    assert message(lambda: coco_evaluate(ground_truth, detections, CLASSES, iou_type="keypoints",
                                         kpt_sigmas=FIVE_SIGMAS)) == (
        "ground truth of image 0 () has no keypoints; iou_type 'keypoints' needs them for every image")


def by_hand(truth, predicted, scale, alpha):
    """PCK, NME, per-joint PCK and NME (None where never labelled) with plain loops."""
    hits, errors, per_joint = 0, [], {k: [] for k in range(truth.shape[1])}
    for n in range(len(truth)):
        for k in range(truth.shape[1]):
            if truth[n, k, 2] > 0:
                dx, dy = predicted[n, k, 0] - truth[n, k, 0], predicted[n, k, 1] - truth[n, k, 1]
                error = float(np.sqrt(dx * dx + dy * dy)) / scale[n]
                errors.append(error)
                hits += error < alpha
                per_joint[k].append(error)
    joint_pck = [np.mean([e < alpha for e in v]) if v else None for v in per_joint.values()]
    joint_nme = [np.mean(v) if v else None for v in per_joint.values()]
    return hits / len(errors), np.mean(errors), joint_pck, joint_nme


def landmark_case(seed, count=12, joints=6):
    rng = np.random.default_rng(seed)
    size = rng.uniform(20, 200, (count, 2))
    corner = rng.uniform(0, 100, (count, 2))
    boxes = np.concatenate([corner, corner + size], 1)
    points = corner[:, None] + rng.random((count, joints, 2)) * size[:, None]
    visibility = rng.choice([0, 1, 2], (count, joints), p=[0.2, 0.3, 0.5])
    visibility[:, :2] = 2  # the normalising pair is always labelled
    visibility[:, -1] = 0  # one joint is never labelled
    truth = np.concatenate([points * (visibility[..., None] > 0), visibility[..., None]], 2)
    noise = rng.normal(0, 1, points.shape) * rng.uniform(0, 0.3, (count, 1, 1)) * size.max(1)[:, None, None]
    predicted = points + noise
    predicted = np.concatenate([predicted, rng.random((count, joints, 1))], 2)  # a score column, unused
    return truth, predicted, boxes


@pytest.mark.parametrize("alpha", [0.05, 0.2])
def test_pck_and_nme_against_numpy_by_hand(alpha):
    truth, predicted, boxes = landmark_case(int(alpha * 100))
    names = ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right", "chin"]
    ours = landmark_metrics(torch.from_numpy(truth), predicted, boxes, alpha=alpha, names=names)
    pck, nme, joint_pck, joint_nme = by_hand(truth, predicted, np.max(boxes[:, 2:] - boxes[:, :2], 1), alpha)
    assert ours.pck == pytest.approx(pck, abs=1e-12) and ours.nme == pytest.approx(nme, abs=1e-12)
    assert 0.1 < ours.pck < 0.95 and ours.count == int((truth[:, :, 2] > 0).sum())
    assert list(ours.per_joint_pck) == names and ours.per_joint_pck["chin"] == -1 and ours.per_joint_nme["chin"] == -1
    np.testing.assert_allclose(list(ours.per_joint_pck.values())[:-1], joint_pck[:-1], rtol=0, atol=1e-12)
    np.testing.assert_allclose(list(ours.per_joint_nme.values())[:-1], joint_nme[:-1], rtol=0, atol=1e-12)
    # normalised by the true inter-ocular distance, named or by index
    ocular = np.linalg.norm(truth[:, 0, :2] - truth[:, 1, :2], axis=1)
    pck, nme, _, _ = by_hand(truth, predicted, ocular, alpha)
    for pair in [("left_eye", "right_eye"), (1, 0)]:
        eyes = landmark_metrics(truth, predicted, alpha=alpha, normalise_by=pair, names=names)
        assert eyes.pck == pytest.approx(pck, abs=1e-12) and eyes.nme == pytest.approx(nme, abs=1e-12)


def test_pck_counts_only_errors_under_alpha_and_labelled_joints():
    truth = np.array([[[10, 10, 2], [10, 10, 1], [10, 10, 2], [10, 10, 2], [0, 0, 0]]], np.float64)
    # errors 10, 25, 5 (3-4-5), exactly 20 = alpha x 100 (not under it), and an unlabelled joint far off
    predicted = np.array([[[20, 10], [10, 35], [13, 14], [30, 10], [500, 500]]], np.float64)
    result = landmark_metrics(truth, predicted, np.array([[0, 0, 100, 50]]), alpha=0.2)
    assert result.pck == 0.5 and result.nme == pytest.approx(0.6 / 4, abs=1e-15) and result.count == 4
    assert list(result.per_joint_pck.values()) == [1, 0, 1, 0, -1]


def test_landmark_mistakes():
    truth, predicted, boxes = landmark_case(3, count=4, joints=3)
    names = ["a", "b", "c"]
    assert message(lambda: landmark_metrics(truth, predicted)) == (
        "landmark metrics need the objects' boxes (N, 4) or normalise_by= a pair of joints")
    assert message(lambda: landmark_metrics(truth, predicted[:, :2], boxes)) == (
        "predicted has shape (4, 2, 3), expected (4, 3, 2 or 3) as the truth: x, y (and a score) of each joint")
    assert message(lambda: landmark_metrics(truth, predicted, boxes[:3])) == (
        "boxes has shape (3, 4), expected (4, 4): one xyxy box per image")
    assert message(lambda: landmark_metrics(truth, predicted, normalise_by=("a", "d"), names=names)) == (
        "normalise_by names joint 'd', which is not one of a, b, c")
    truth[2, 1, 2] = 0
    assert message(lambda: landmark_metrics(truth, predicted, normalise_by=("a", "b"), names=names)) == (
        "image 2 does not label both normalising joints a and b, so its scale is unknown")
    boxes[1, 2:] = boxes[1, :2]
    assert message(lambda: landmark_metrics(truth, predicted, boxes)) == (
        "image 1's normaliser, its box's longer side, is 0; it must be positive")
