"""What the Python API's predict gives per image or frame: a Results object.

Made of what the task's Predictor already produces for a frame (its predictions.json entries, its
model output and its drawing), so the command line and the API never disagree. Which attributes are
set depends on the task: boxes (detect, instance segment), masks (instance segment), mask (semantic
segment), probs (classify), restored (restore), forecast (forecast); the others are None.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ..errors import FovealError
from ..files import write_bytes

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class Boxes:
    """Detected boxes in the image's own pixels: xyxy (N, 4) float32, conf (N,) float32, cls (N,) int64, and in
    `track` each one's track id (N,) int64 (None otherwise)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    id: np.ndarray | None = None

    @classmethod
    def of(cls, det: dict) -> "Boxes":
        """The Boxes of a predictor's detections: numpy `boxes` (N, 4), `scores` and `labels` (and `track_ids`)."""
        ids = det.get("track_ids")
        return cls(np.asarray(det["boxes"], np.float32).reshape(-1, 4), np.asarray(det["scores"], np.float32),
                   np.asarray(det["labels"], np.int64), None if ids is None else np.asarray(ids, np.int64))

    @property
    def xywh(self) -> np.ndarray:
        """(N, 4): centre x, centre y, width, height (predictions.json's bbox is COCO's x, y of the corner)."""
        x1, y1, x2, y2 = self.xyxy.T
        return np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], axis=1).astype(np.float32)

    def __len__(self) -> int:
        return len(self.cls)


@dataclass(frozen=True)
class Probs:
    """The top-k classes of an image, best first: indices (k,) int64 and their probabilities (k,) float32."""

    indices: np.ndarray
    scores: np.ndarray

    @property
    def top1(self) -> int:
        return int(self.indices[0])

    @property
    def top1conf(self) -> float:
        return float(self.scores[0])

    @property
    def top5(self) -> list[int]:
        return self.indices[:5].tolist()

    @property
    def top5conf(self) -> list[float]:
        return self.scores[:5].tolist()


@dataclass(frozen=True)
class Forecast:
    """values (horizon, targets) in the data's units; lower and upper: the interval (None without val windows)."""

    values: np.ndarray
    lower: np.ndarray | None
    upper: np.ndarray | None


class Results:
    """One image's or frame's predictions: the task's attributes (see the module), `predictions` (the entries
    predict writes to predictions.json for it), `names` (the classes), `orig_shape` (H, W), `speed` (ms),
    `path` and `frame` (the frame number in a video; None for an image)."""

    boxes: Boxes | None = None
    masks: np.ndarray | None = None  # (N, H, W) bool, one per box
    keypoints: np.ndarray | None = None  # (N, K, 3) float32 x, y pixels and score of each box's joints (pose)
    mask: np.ndarray | None = None  # (H, W) uint8 class indices
    probs: Probs | None = None
    restored: np.ndarray | None = None  # (H', W', C) uint8 RGB (C = 1 for grey models)
    forecast: Forecast | None = None

    def __init__(self, task: str, path: str, frame: int | None, orig_img: np.ndarray, names: list[str],
                 predictions: list[dict], speed: dict[str, float], draw: Callable[[], np.ndarray | None],
                 drawn: np.ndarray | None = None, **fields):
        self.task, self.path, self.frame, self.names = task, path, frame, names
        self.orig_img = orig_img  # (H, W, 3) uint8 RGB, as the model saw it
        self.orig_shape = tuple(orig_img.shape[:2])
        self.predictions, self.speed = predictions, speed
        self._draw, self._drawn = draw, drawn
        for key, value in fields.items():
            setattr(self, key, value)

    def plot(self) -> np.ndarray:
        """The annotated (H, W, 3) uint8 RGB image, as predict draws it (save=true); drawn once, when first asked."""
        if self._drawn is None:
            self._drawn = self._draw()
            if self._drawn is None:
                raise FovealError(f"plot: {self.task} draws nothing for {self.path}")
        return self._drawn

    def save(self, path) -> Path:
        """Write plot() as an image file (its format from the suffix: .png, .jpg, ...); returns the path."""
        path = Path(path)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            raise FovealError(f"save: {path}: name an image file ({', '.join(IMAGE_SUFFIXES)})")
        image = self.plot()
        path.parent.mkdir(parents=True, exist_ok=True)
        bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 and image.shape[2] == 3 else image
        return write_bytes(path, cv2.imencode(path.suffix, bgr)[1].tobytes())

    def to_dict(self) -> dict:
        return {"task": self.task, "path": self.path, "frame": self.frame, "orig_shape": list(self.orig_shape),
                "speed": self.speed, "predictions": self.predictions}

    def to_json(self, indent: int | None = None) -> str:
        """task, path, frame, orig_shape, speed and predictions (the predictions.json entries) as JSON."""
        return json.dumps(self.to_dict(), indent=indent)

    def __len__(self) -> int:
        return len(self.predictions)

    def __repr__(self) -> str:
        where = self.path + ("" if self.frame is None else f" frame {self.frame}")
        height, width = self.orig_shape
        return f"<foveal {self.task} Results: {where}, {width}x{height}, {len(self.predictions)} predictions>"
