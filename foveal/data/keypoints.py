"""What pose readers share about keypoint layouts: COCO's 17 person joints, and the left/right mirror
of a joint list worked out from its names."""

import re

from ..ops.keypoints import COCO_SIGMAS
from .detection import KeypointLayout

COCO_KEYPOINT_NAMES = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                       "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
                       "left_knee", "right_knee", "left_ankle", "right_ankle")
# COCO's person_keypoints skeleton (its files count from 1), counted from 0
COCO_SKELETON = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8),
                 (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))

_SIDE = re.compile(r"(?<![a-z])(left|right)(?![a-z])", re.IGNORECASE)  # the word alone: not "bright_spot"
_SWAP = {"left": "right", "right": "left", "Left": "Right", "Right": "Left", "LEFT": "RIGHT", "RIGHT": "LEFT"}


def mirror_index(names) -> list[int] | None:
    """flip_idx from joint names: a name with the word left or right (left_wrist, wrist-right, Left Eye)
    maps to the same name with the other side, every other joint to itself; None when no pair is found."""
    names = list(names)
    position = {name: k for k, name in enumerate(names)}
    flip = [position.get(_SIDE.sub(lambda m: _SWAP.get(m.group(1), m.group(1)), name), k)
            for k, name in enumerate(names)]
    return flip if flip != list(range(len(names))) else None


def named_layout(names, skeleton=(), flip_idx=None) -> KeypointLayout:
    """A KeypointLayout of `names`: flip_idx from the names when not given, COCO's sigmas for COCO's 17 joints."""
    names = [str(name) for name in names]
    return KeypointLayout(names, [tuple(pair) for pair in skeleton],
                          mirror_index(names) if flip_idx is None else list(flip_idx),
                          list(COCO_SIGMAS) if tuple(names) == COCO_KEYPOINT_NAMES else None)


def joint_sides(names) -> list[int]:
    """Per joint 1 when its name says left, 2 right, 0 otherwise (how skeletons are coloured)."""
    sides = []
    for name in names:
        side = _SIDE.search(str(name))
        sides.append(0 if side is None else 1 if side.group(1).lower() == "left" else 2)
    return sides
