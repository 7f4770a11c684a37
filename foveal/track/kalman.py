"""A constant-velocity Kalman filter over many boxes at once: states (N, 8), covariances (N, 8, 8).

Written here, in a few lines of numpy, rather than taken from filterpy: filterpy is unmaintained and filters
one object per Python object, while a tracker predicts and corrects hundreds of boxes every frame.

A state is a box (a, b, c, d) and its velocity per frame, in one of two forms:
    xyah  cx, cy, aspect (w / h), h    ByteTrack's
    xywh  cx, cy, w, h                 BoT-SORT's (a box's width follows its own noise, not its height's)
"""

import numpy as np

FORMS = ("xyah", "xywh")
# Noise as a fraction of the box's size, so that a large near box may move more pixels than a small far one
# (the choice of the SORT family): a measured position is off by about 1/20 of the box, a velocity changes by
# about 1/160 of it a frame. The aspect ratio, a pure number, has its own small fixed noise.
POSITION_STD = 1 / 20
VELOCITY_STD = 1 / 160
ASPECT_STD, ASPECT_VELOCITY_STD = 1e-2, 1e-5

SIZE_VELOCITY = {"xyah": [7], "xywh": [6, 7]}  # where a state keeps how fast its box grows

MOTION = np.eye(8)
MOTION[:4, 4:] = np.eye(4)  # x' = x + v


def to_state_box(boxes: np.ndarray, form: str) -> np.ndarray:
    """(N, 4) xyxy boxes as (N, 4) measurements of the filter's form."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    third = w / np.maximum(h, 1e-6) if form == "xyah" else w
    return np.stack([boxes[:, 0] + w / 2, boxes[:, 1] + h / 2, third, h], 1)


def to_xyxy(mean: np.ndarray, form: str) -> np.ndarray:
    """(N, 4) xyxy boxes of (N, 8) states."""
    cx, cy, third, h = mean[:, 0], mean[:, 1], mean[:, 2], mean[:, 3]
    w = third * h if form == "xyah" else third
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)


def _scales(mean: np.ndarray, form: str) -> np.ndarray:
    """(N, 4) the size each of a state's four numbers is measured against: h for all (xyah), or w, h, w, h."""
    h = mean[:, 3]
    w = h if form == "xyah" else mean[:, 2]
    return np.stack([w, h, w, h], 1)


def _diagonal(std: np.ndarray) -> np.ndarray:
    """(N, K, K) diagonal covariances of (N, K) standard deviations."""
    cov = np.zeros(std.shape + std.shape[-1:])
    idx = np.arange(std.shape[1])
    cov[:, idx, idx] = std**2
    return cov


def _stds(mean: np.ndarray, form: str, position: float, velocity: float) -> np.ndarray:
    """(N, 8) standard deviations of a state: `position` and `velocity` times the box's size."""
    size = _scales(mean, form)
    std = np.concatenate([position * size, velocity * size], 1)
    if form == "xyah":
        std[:, 2], std[:, 6] = ASPECT_STD, ASPECT_VELOCITY_STD
    return std


def initiate(measurements: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """New states at (N, 4) measurements, still, with a velocity that is very uncertain."""
    mean = np.concatenate([measurements, np.zeros_like(measurements)], 1)
    return mean, _diagonal(_stds(mean, form, 2 * POSITION_STD, 10 * VELOCITY_STD))


def predict(mean: np.ndarray, cov: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """The states one frame later."""
    noise = _diagonal(_stds(mean, form, POSITION_STD, VELOCITY_STD))
    return mean @ MOTION.T, MOTION @ cov @ MOTION.T + noise


def update(mean, cov, measurements: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """The states corrected by (N, 4) measurements of the same boxes (N may be 0)."""
    std = _stds(mean, form, POSITION_STD, 0)[:, :4]
    innovation_cov = cov[:, :4, :4] + _diagonal(std)  # H P H' + R, H = the first four rows of the identity
    gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)  # P H' S^-1 (S symmetric)
    innovation = measurements - mean[:, :4]
    mean = mean + (gain @ innovation[:, :, None])[:, :, 0]
    return mean, cov - gain @ cov[:, :4, :]


def warp(mean: np.ndarray, cov: np.ndarray, affine: np.ndarray, form: str) -> tuple[np.ndarray, np.ndarray]:
    """States and covariances moved by a camera's 2x3 affine warp (previous frame -> this frame).

    Centres are warped and their velocities turned with the warp's linear part; sizes (w and h, or h) and
    their velocities are scaled by the warp's scale, sqrt|det|. The aspect ratio does not change.
    """
    linear, shift = affine[:, :2], affine[:, 2]
    scale = np.sqrt(abs(np.linalg.det(linear)))
    jacobian = np.eye(8)
    jacobian[0:2, 0:2] = jacobian[4:6, 4:6] = linear
    sizes = [3, 7] if form == "xyah" else [2, 3, 6, 7]
    jacobian[sizes, sizes] = scale
    mean = mean @ jacobian.T
    mean[:, :2] += shift
    return mean, jacobian @ cov @ jacobian.T
