"""What a tracker returns for a frame."""

from typing import NamedTuple

import numpy as np


class Tracks(NamedTuple):
    """The tracks a frame's detections continued or started, one row each (confirmed tracks only)."""

    ids: np.ndarray  # (N,) int64: 1, 2, ... in order of creation, never reused by one tracker
    boxes: np.ndarray  # (N, 4) float32 x1 y1 x2 y2: the detection's own box in this frame
    scores: np.ndarray  # (N,) float32: the detection's score
    classes: np.ndarray  # (N,) int64: the detection's class
    index: np.ndarray  # (N,) int64: the row of the update's detections this track took
