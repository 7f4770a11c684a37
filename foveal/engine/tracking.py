"""The `track` mode: a box Predictor's detections followed through a video by a tracker (foveal/track), and
the scores of a tracker's MOTChallenge results."""

from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..data.formats.mot import GT_FILE, MotFrame, considered, empty_mot_frame, read_mot_file
from ..errors import FovealError
from ..metrics.tracking import EPS, TrackCounts, combine, sequence_counts
from ..ops.boxes import box_iou_numpy


def tracked_detections(det: dict, tracks) -> dict:
    """The rows of a frame's detections (boxes, scores, labels, and masks or any other per-object array) that
    the tracker kept, in the tracks' order, with each one's "track_ids"."""
    kept = {key: value[tracks.index] for key, value in det.items()}
    kept["track_ids"] = np.asarray(tracks.ids, np.int64)
    return kept


def score_mot_files(result_path, gt_path, iou: float = 0.5, classes=None, distractors=()) -> dict:
    """A tracker's MOTChallenge results file scored against a ground-truth file (metrics/tracking.py's
    track_scores dict). The ground truth keeps its considered rows of `classes` (file class ids, e.g. (1,)
    for pedestrians; all when None). A result box matched to a ground-truth box of one of the `distractors`
    classes is left out, as the benchmark does: classes=(1,), distractors=MOT17_DISTRACTORS scores as
    TrackEval scores MOT17 and MOT16. It lives here, above data and metrics, since it needs both and data may
    not import metrics (metrics imports data)."""
    return mot_file_counts(result_path, gt_path, iou, classes, distractors).metrics()


def score_mot_folder(results_folder, gt_folder, iou: float = 0.5, classes=None, distractors=()) -> dict:
    """The scores of every sequence of a MOTChallenge folder (each sub-folder with a gt/gt.txt, by name) whose
    results are `results_folder/<sequence>.txt` (the benchmark's submission layout), and of them all combined
    as TrackEval combines them: {sequence: scores, ..., "COMBINED": scores}; keys as score_mot_files'."""
    results_folder, gt_folder = Path(results_folder), Path(gt_folder)
    sequences = sorted(p for p in gt_folder.iterdir() if (p / GT_FILE).is_file()) if gt_folder.is_dir() else []
    if not sequences:
        raise FovealError(f"{gt_folder}: no sequence folder with a {GT_FILE.as_posix()} in it")
    counts = {}
    for sequence in sequences:
        result = results_folder / f"{sequence.name}.txt"
        if not result.is_file():
            raise FovealError(f"{results_folder}: no results for sequence {sequence.name} ({result.name})")
        counts[sequence.name] = mot_file_counts(result, sequence / GT_FILE, iou, classes, distractors)
    scores = {name: one.metrics() for name, one in counts.items()}
    scores["COMBINED"] = combine(list(counts.values())).metrics()
    return scores


def mot_file_counts(result_path, gt_path, iou: float = 0.5, classes=None, distractors=()) -> TrackCounts:
    """score_mot_files' counts, for combining with other sequences' (metrics.tracking.combine)."""
    gt, results = read_mot_file(gt_path), read_mot_file(result_path)
    length = max(len(gt), len(results))  # a file ends at its last row: frames after it are empty
    gt += [empty_mot_frame() for _ in range(length - len(gt))]
    results += [empty_mot_frame() for _ in range(length - len(results))]
    if len(distractors):
        results = [_unmasked(result, truth, distractors) for result, truth in zip(results, gt)]
    return sequence_counts([considered(truth, classes) for truth in gt], results, iou)


def _unmasked(result: MotFrame, truth: MotFrame, distractors) -> MotFrame:
    """The result rows left once those matched to a distractor are dropped; the matching is one-to-one over
    every ground-truth row of the frame, largest IoU sum, IoU >= 0.5 (TrackEval's preprocessing)."""
    if len(result.ids) == 0 or len(truth.ids) == 0:
        return result
    ious = box_iou_numpy(truth.boxes, result.boxes)
    ious[ious < 0.5 - EPS] = 0
    rows, cols = linear_sum_assignment(ious, maximize=True)
    matched = ious[rows, cols] > EPS
    keep = np.ones(len(result.ids), bool)
    keep[cols[matched & np.isin(truth.classes[rows], list(distractors))]] = False
    return MotFrame(*(column[keep] for column in result))
