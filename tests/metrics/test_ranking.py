"""AP of one ranked list: against scikit-learn's average_precision_score, the VOC 11-point rule written out,
and COCO's 101-point rule against its arithmetic written out and against COCOeval (faster-coco-eval) itself."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from foveal.errors import FovealError
from foveal.metrics.ranking import AP_METHODS, average_precision, ranked_pr


def voc11_by_hand(scores, correct, positives):
    """PASCAL VOC 2007: mean over t = 0, 0.1, ..., 1 of the highest precision among ranks with recall >= t."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    tp, points = 0, []
    for rank, i in enumerate(order, 1):
        tp += correct[i]
        points.append((tp / positives, tp / rank))
    return sum(max([p for r, p in points if r >= k / 10], default=0.0) for k in range(11)) / 11


def random_list(seed, n=30):
    rng = np.random.default_rng(seed)
    scores = rng.permutation(n) / n + 0.01  # no ties: sklearn groups tied scores into one threshold
    correct = (rng.random(n) < 0.5).astype(int)
    correct[0] = 1
    return scores, correct


@pytest.mark.parametrize("seed", range(6))
def test_step_ap_is_sklearns_and_voc11_is_the_devkit_rule(seed):
    scores, correct = random_list(seed)
    found = int(correct.sum())
    sklearn_ap = average_precision_score(correct, scores)
    assert average_precision(scores, correct, method="step") == pytest.approx(sklearn_ap, abs=1e-12)
    # more objects than found: sklearn's recall counts only its list's positives, so it is ours x positives / TP
    positives = found + 4
    assert average_precision(scores, correct, positives, "step") == pytest.approx(sklearn_ap * found / positives,
                                                                                  abs=1e-12)
    for total in (found, positives):
        assert average_precision(scores, correct, total, "voc11") == pytest.approx(
            voc11_by_hand(list(scores), list(correct), total), abs=1e-12)
    interpolated = average_precision(scores, correct, method="all")
    assert interpolated >= sklearn_ap - 1e-12  # the envelope never lowers a precision


def test_a_worked_list():
    # ranks: hit, miss, hit, miss, hit of 5 objects: precision 1, .5, .667, .5, .6; recall .2, .2, .4, .4, .6
    scores, correct = [0.9, 0.8, 0.7, 0.6, 0.5], [1, 0, 1, 0, 1]
    pr = ranked_pr(scores, correct, 5)
    assert pr.tp.tolist() == [1, 1, 2, 2, 3] and pr.fp.tolist() == [0, 1, 1, 2, 2]
    np.testing.assert_allclose(pr.precision, [1, 1 / 2, 2 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(pr.recall, [0.2, 0.2, 0.4, 0.4, 0.6])
    assert average_precision(scores, correct, 5, "step") == pytest.approx(0.2 * 1 + 0.2 * 2 / 3 + 0.2 * 0.6)
    assert average_precision(scores, correct, 5, "all") == pytest.approx(0.2 * 1 + 0.2 * 2 / 3 + 0.2 * 0.6)
    # 11-point: r = 0..0.2 -> 1, 0.3..0.4 -> 2/3, 0.5..0.6 -> 0.6, 0.7..1 -> 0
    assert average_precision(scores, correct, 5, "voc11") == pytest.approx((3 + 2 * 2 / 3 + 2 * 0.6) / 11)
    # 101-point: COCOeval's thresholds; recall 0.2 is reached at rank 1 (r <= 0.2), 0.4 at rank 3, 0.6 at rank 5
    thresholds = np.linspace(0, 1, 101)
    expected = np.select([thresholds <= 0.2, thresholds <= 0.4, thresholds <= 0.6], [1, 2 / 3, 0.6], 0).mean()
    assert average_precision(scores, correct, 5, "coco101") == pytest.approx(expected)


def test_ties_keep_the_given_order_and_mistakes_are_named():
    assert ranked_pr([0.5, 0.9, 0.5], [0, 1, 1]).order.tolist() == [1, 0, 2]
    assert all(average_precision([], [], 3, method) == 0 for method in AP_METHODS)
    with pytest.raises(FovealError, match="^correct: 2 values for 3 scores"):
        ranked_pr([0.9, 0.8, 0.7], [1, 0])
    with pytest.raises(FovealError, match="^correct: expected 0 or 1 per detection, got 2$"):
        ranked_pr([0.9, 0.8], [1, 2])
    with pytest.raises(FovealError, match="^positives: 1, but 2 detections are correct"):
        ranked_pr([0.9, 0.8], [1, 1], 1)
    with pytest.raises(FovealError, match=r"^method: unknown AP method 'voc'"):
        average_precision([0.9], [1], method="voc")


def test_coco101_equals_cocoeval_on_one_image():
    """Correct detections lie exactly on their objects and wrong ones far from all, so that every IoU threshold
    agrees: COCO's mAP is then the 101-point AP of the ranking."""
    from foveal.data.detection import ImageAnnotations
    from foveal.metrics.detection import coco_evaluate

    rng = np.random.default_rng(3)
    objects = np.array([[40.0 * i, 10, 40.0 * i + 30, 40] for i in range(20)], np.float32)  # 20 to find
    correct = np.array([1] * 7 + [0] * 9)
    rng.shuffle(correct)
    scores = rng.permutation(16) / 16 + 0.03
    boxes = np.where(correct[:, None] == 1, objects[np.cumsum(correct) - 1], [[10, 300, 40, 330]])
    truth = ImageAnnotations(image="", width=800, height=400, boxes=objects, labels=np.zeros(20, np.int64))
    detections = {"boxes": boxes.astype(np.float32), "scores": scores.astype(np.float32),
                  "labels": np.zeros(16, np.int64)}
    stats = coco_evaluate([truth], [detections], ["thing"]).stats
    assert average_precision(scores.astype(np.float32), correct, 20, "coco101") == pytest.approx(stats["map"],
                                                                                                 abs=1e-9)
