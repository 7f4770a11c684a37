"""The `track` mode: a box Predictor's detections followed through a video by a tracker (foveal/track)."""

import numpy as np


def tracked_detections(det: dict, tracks) -> dict:
    """The rows of a frame's detections (boxes, scores, labels, and masks or any other per-object array) that
    the tracker kept, in the tracks' order, with each one's "track_ids"."""
    kept = {key: value[tracks.index] for key, value in det.items()}
    kept["track_ids"] = np.asarray(tracks.ids, np.int64)
    return kept
