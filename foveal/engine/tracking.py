"""The `track` mode: a box Predictor's detections followed through a video by a tracker (foveal/track), and
the scores of a tracker's MOTChallenge results."""

import numpy as np

from ..data.formats.mot import considered, empty_mot_frame, read_mot_file
from ..metrics.tracking import track_scores


def tracked_detections(det: dict, tracks) -> dict:
    """The rows of a frame's detections (boxes, scores, labels, and masks or any other per-object array) that
    the tracker kept, in the tracks' order, with each one's "track_ids"."""
    kept = {key: value[tracks.index] for key, value in det.items()}
    kept["track_ids"] = np.asarray(tracks.ids, np.int64)
    return kept


def score_mot_files(result_path, gt_path, iou: float = 0.5, classes=None) -> dict:
    """A tracker's MOTChallenge results file scored against a ground-truth file (metrics/tracking.py's
    track_scores dict). The ground truth keeps its considered rows of `classes` (file class ids, e.g. (1,)
    for pedestrians; all when None); every result row counts. It lives here, above data and metrics, since
    it needs both and data may not import metrics (metrics imports data)."""
    gt, results = read_mot_file(gt_path), read_mot_file(result_path)
    length = max(len(gt), len(results))  # a file ends at its last row: frames after it are empty
    gt += [empty_mot_frame() for _ in range(length - len(gt))]
    results += [empty_mot_frame() for _ in range(length - len(results))]
    return track_scores([considered(frame, classes) for frame in gt], results, iou)
