"""Videos with identities: the sequences `track` scores a tracker on (MOTChallenge folders, the embedded
shapes_video and polyps_video), in one form."""

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np


class FrameTruth(NamedTuple):
    """The ground truth of one frame: each object's identity, box and class."""

    ids: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float32 x1 y1 x2 y2, pixels
    classes: np.ndarray  # (n,) int64


@dataclass
class TrackSequence:
    name: str
    fps: float
    width: int
    height: int
    frames: list  # (H, W, 3) uint8 RGB arrays, or image Paths read when used
    gt: list[FrameTruth] | None  # one per frame, or None when the sequence has no ground truth
    classes: list[str]
    folder: Path | None = None  # where it was read from
