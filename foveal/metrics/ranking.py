"""Average precision of one ranked list of detections, by each of the usual interpolations.

The detections are ranked by score, highest first (ties keep their given order, as COCOeval's stable
sort does); each is correct (a true positive) or not, and `positives` counts every object to find,
found or not. Precision at rank k is TP_k / k, recall TP_k / positives: when positives exceeds the
list's true positives, recall never reaches 1 and the missing part of the curve counts as precision 0.

    voc11    PASCAL VOC 2007: the mean over recall 0, 0.1, ..., 1 of the highest precision at recall >= r
    all      PASCAL VOC 2010 and later: the area under the precision envelope (precision made
             non-increasing from the right), summed at every recall step
    coco101  COCO: the mean over recall 0, 0.01, ..., 1 of the envelope at the first rank reaching r,
             COCOeval's rule and its thresholds (np.linspace(0, 1, 101), one ulp above 0.35, 0.41 ... as written)
    step     no interpolation: the sum of (R_k - R_k-1) * P_k, scikit-learn's average_precision_score
             (which equals it times TP / positives: sklearn's recall counts only the positives in its list)
"""

from dataclasses import dataclass

import numpy as np

from foveal.errors import FovealError, did_you_mean

AP_METHODS = ("voc11", "all", "coco101", "step")
VOC_RECALLS = np.arange(11) / 10  # exact tenths: a recall of 3/10 reaches 0.3
COCO_RECALLS = np.linspace(0.0, 1.0, 101)  # COCOeval's params.recThrs


@dataclass
class RankedPR:
    order: np.ndarray  # (N,) indices of the detections, highest score first
    correct: np.ndarray  # (N,) bool, in ranked order
    tp: np.ndarray  # (N,) cumulative true positives at each rank
    fp: np.ndarray  # (N,) cumulative false positives
    precision: np.ndarray  # (N,) TP / (TP + FP)
    recall: np.ndarray  # (N,) TP / positives
    positives: int


def ranked_pr(scores, correct, positives: int | None = None) -> RankedPR:
    """The precision/recall table of detections `scores` (N,), `correct` (N,) 0/1, ranked by score;
    positives defaults to the true positives in the list (every object found)."""
    scores = np.asarray(scores, np.float64).reshape(-1)
    hits = np.asarray(correct, np.float64).reshape(-1)
    if len(hits) != len(scores):
        raise FovealError(f"correct: {len(hits)} value{'s' * (len(hits) != 1)} for {len(scores)} scores; "
                          "give one 0 or 1 per detection")
    if not np.isin(hits, (0, 1)).all():
        raise FovealError(f"correct: expected 0 or 1 per detection, got {hits[~np.isin(hits, (0, 1))][0]:g}")
    found = int(hits.sum())
    positives = found if positives is None else int(positives)
    if positives < max(found, 1):
        raise FovealError(f"positives: {positives}, but {found} detections are correct; positives counts every "
                          f"object to find, so at least {max(found, 1)}")
    order = np.argsort(-scores, kind="stable")
    ranked = hits[order].astype(bool)
    tp, fp = np.cumsum(ranked), np.cumsum(~ranked)
    return RankedPR(order, ranked, tp, fp, tp / np.arange(1, len(tp) + 1), tp / positives, positives)


def envelope(precision: np.ndarray) -> np.ndarray:
    """Precision made non-increasing: at each rank, the best precision at that rank or any later one."""
    return np.maximum.accumulate(precision[::-1])[::-1] if len(precision) else precision


def average_precision(scores, correct, positives: int | None = None, method: str = "all") -> float:
    """AP of a ranked list by `method` (AP_METHODS; see the module's docstring)."""
    if method not in AP_METHODS:
        raise FovealError(f"method: unknown AP method '{method}'{did_you_mean(method, AP_METHODS)}; "
                          f"choose from {', '.join(AP_METHODS)}")
    return pr_average_precision(ranked_pr(scores, correct, positives), method)


def pr_average_precision(pr: RankedPR, method: str) -> float:
    """AP of a table ranked_pr made."""
    steps = np.diff(pr.recall, prepend=0.0)  # recall gained at each rank: 1 / positives at a hit, else 0
    if method == "step":
        return float((steps * pr.precision).sum())
    if method == "all":
        return float((steps * envelope(pr.precision)).sum())
    return float(interpolated(pr, VOC_RECALLS if method == "voc11" else COCO_RECALLS).mean())


def interpolated(pr: RankedPR, recalls: np.ndarray) -> np.ndarray:
    """(R,) the best precision at recall >= each of `recalls`: the envelope at the first rank reaching it, 0 where
    the list never does."""
    if not len(pr.precision):
        return np.zeros(len(recalls))
    first = np.searchsorted(pr.recall, recalls, side="left")  # recall is non-decreasing
    return np.where(first < len(pr.recall), envelope(pr.precision)[np.minimum(first, len(pr.recall) - 1)], 0.0)
