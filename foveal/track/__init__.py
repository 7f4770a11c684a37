"""Multi-object trackers: ByteTrack and BoT-SORT, plain classes that follow a detector's boxes through a video.

    tracker = make_tracker("bytetrack")             # or tracker_from(cfg): the track keys of a run's config
    for frame in video:
        det = detector(frame)                       # any detector: (N, 4) x1 y1 x2 y2 boxes, scores, classes
        tracks = tracker.update(det["boxes"], det["scores"], det["labels"], frame)
        tracks.ids, tracks.boxes, tracks.index      # index: the row of det each track took (masks follow it)
"""

from typing import NamedTuple

import numpy as np


class Tracks(NamedTuple):
    """The tracks a frame's detections continued or started, one row each (confirmed tracks only)."""

    ids: np.ndarray  # (N,) int64: 1, 2, ... in order of creation, never reused by one tracker
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2: the detection's own box in this frame
    scores: np.ndarray  # (N,) float32: the detection's score
    classes: np.ndarray  # (N,) int64: the detection's class
    index: np.ndarray  # (N,) int64: the row of the update's detections this track took


def make_tracker(name: str = "bytetrack", **keys):
    """A new tracker by name (bytetrack, botsort); keys: TrackConfig's fields other than `tracker`."""
    raise NotImplementedError  # track/bytetrack.py, track/botsort.py


def tracker_from(cfg):
    """make_tracker with the track keys of a run's config (TrackConfig's fields)."""
    from .config import TRACK_KEYS

    return make_tracker(cfg.tracker, **{key: getattr(cfg, key) for key in TRACK_KEYS})
