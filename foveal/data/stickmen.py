"""Embedded "stickmen" pose data: deterministic synthetic stick figures with 13 named joints.

An image holds 1-3 figures on a textured background (synthetic.textured_background), each 15-80% of
the frame high, in a random pose (lean, arm and leg angles), facing the viewer: the person's left
side is on the image's right, as in a photo of someone facing the camera. Limbs are thick lines
(thickness grows with the figure), the head a filled disc around the head joint, and the figure's
left limbs are drawn in a lighter shade of its colour than its right ones, so that left and right
can be told apart by colour as well as by position. A horizontal flip (with FLIP_IDX) keeps the
position cue, left joints on the image's right, but turns the colour cue around.

Figures are drawn one after the other, a later one over the earlier ones, and may run off the
image. A joint is visible (v = 2) when its pixel shows its own figure, hidden (v = 1) when a later
figure covers that pixel, and unlabelled (v = 0, x = y = 0) when it lies outside the image. Keypoints
are in continuous pixel coordinates (pixel column i spans x in [i, i + 1)); a box is the bounds of
the figure's drawn pixels, hidden ones included, clipped to the image (x2 = max_x + 1), so every
labelled joint lies inside its box. Everything random comes from the numpy Generator passed in.
"""

from functools import lru_cache

import cv2
import numpy as np

from .detection import DetectionData, ImageAnnotations, KeypointLayout
from .keypoints import COCO_SIGMAS
from .synthetic import contrasting_colour, mask_box, textured_background

PERSON_CLASS = "person"
JOINT_NAMES = ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
               "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle")  # COCO's order
SKELETON = ((0, 1), (0, 2), (1, 2), (1, 3), (3, 5), (2, 4), (4, 6), (1, 7), (2, 8), (7, 8), (7, 9), (9, 11),
            (8, 10), (10, 12))
FLIP_IDX = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11)
# COCO's sigmas for the body joints; the head joint, the centre of a disc, takes the shoulders' (between
# the face's tight ones and the hips' loose ones)
SIGMAS = (0.079, *COCO_SIGMAS[5:])
STICKMEN_LAYOUT = KeypointLayout(list(JOINT_NAMES), list(SKELETON), list(FLIP_IDX), list(SIGMAS))

MIN_HEIGHT, MAX_HEIGHT = 0.15, 0.80  # a figure's standing height, as a share of the image height
FIGURE_COUNT = (1, 3)
MIN_VISIBLE_JOINTS = 4  # a figure keeps this many visible joints, or the placement is tried again
PLACEMENT_ATTEMPTS = 20
THICKNESS = 0.035  # limb width, as a share of the figure's height
HEAD_RADIUS = 0.065
SUBPIXEL_BITS = 4  # cv2 draws at 1/16 pixel, so small figures keep their proportions
SEEDS = {"train": 41, "val": 42, "test": 43}


def random_pose(rng: np.random.Generator, height: float, pelvis) -> np.ndarray:
    """(13, 2) joint positions x, y of a figure `height` pixels tall standing upright, its pelvis at
    `pelvis`: limbs at random angles, then the whole figure leaned by up to 25 degrees."""
    # in units of the figure's height, y pointing down, the pelvis at 0; the person's left at +x
    def limb(start, length, angle, side):  # angle from straight down, positive turning outwards
        return start + length * np.array([side * np.sin(angle), np.cos(angle)])

    neck = np.array([0.0, -0.32])
    joints = np.zeros((len(JOINT_NAMES), 2))
    joints[0] = neck + 0.14 * np.array([np.sin(rng.uniform(-0.3, 0.3)), -1.0])
    for side, (shoulder, elbow, wrist, hip, knee, ankle) in ((1, (1, 3, 5, 7, 9, 11)), (-1, (2, 4, 6, 8, 10, 12))):
        joints[shoulder] = neck + (side * 0.11, 0.0)
        upper_arm = rng.uniform(-0.3, 2.8)  # from hanging down to raised above the head
        joints[elbow] = limb(joints[shoulder], 0.17, upper_arm, side)
        joints[wrist] = limb(joints[elbow], 0.16, upper_arm + rng.uniform(-2.3, 1.2), side)
        joints[hip] = (side * 0.075, 0.0)
        thigh = rng.uniform(-0.25, 1.1)
        joints[knee] = limb(joints[hip], 0.25, thigh, side)
        joints[ankle] = limb(joints[knee], 0.24, thigh + rng.uniform(-0.9, 0.4), side)
    lean = rng.uniform(-0.44, 0.44)
    cos, sin = np.cos(lean), np.sin(lean)
    return joints @ np.array([[cos, sin], [-sin, cos]]) * height + pelvis


def _shades(colour: np.ndarray) -> dict[int, tuple]:
    """{side: RGB colour} for the right (-1), middle (0) and left (+1) limbs of a figure."""
    base = np.clip(colour.astype(np.float32), 60, 200)
    return {-1: tuple((base * 0.45).tolist()), 0: tuple(base.tolist()), 1: tuple((base * 0.45 + 140).tolist())}


def _side(joints) -> int:
    """+1 for the left side (every named side left: a left joint, or a limb from a left joint to the head),
    -1 for the right, 0 for the rest (the head, the limbs across the body)."""
    sides = {1 if JOINT_NAMES[k].startswith("left_") else -1 if JOINT_NAMES[k].startswith("right_") else 0
             for k in joints} - {0}
    return sides.pop() if len(sides) == 1 else 0


JOINT_SIDES = [_side((k,)) for k in range(len(JOINT_NAMES))]
LIMBS = sorted(((a, b, _side((a, b))) for a, b in SKELETON), key=lambda limb: limb[2])  # the left side over the right


def _draw_figure(canvas: np.ndarray, joints: np.ndarray, height: float, colours: dict):
    """Draw one figure (joints in continuous pixels) into `canvas`, (H, W, C) uint8, with colours {side: colour}."""
    points = [tuple(p) for p in np.round((joints - 0.5) * (1 << SUBPIXEL_BITS)).astype(np.int64).tolist()]
    thickness = max(2, round(THICKNESS * height))  # pixel i's centre is at x = i + 0.5, hence the - 0.5 above
    for a, b, side in LIMBS:
        cv2.line(canvas, points[a], points[b], colours[side], thickness, cv2.LINE_8, SUBPIXEL_BITS)
    for k, point in enumerate(points):  # round joints, and the head's disc
        radius = HEAD_RADIUS * height if k == 0 else thickness * 0.6
        cv2.circle(canvas, point, max(1, round(radius * (1 << SUBPIXEL_BITS))), colours[JOINT_SIDES[k]], -1,
                   cv2.LINE_8, SUBPIXEL_BITS)


def _figure_mask(joints: np.ndarray, height: float, size: tuple[int, int]) -> np.ndarray:
    """(H, W) bool pixels the figure covers inside an image of `size` (height, width)."""
    mask = np.zeros(size, np.uint8)
    _draw_figure(mask, joints, height, {-1: 1, 0: 1, 1: 1})
    return mask.view(bool)


def _keypoints(joints: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    """(N, 13, 3) keypoints of figures drawn in order with `masks`: v 2 where a joint's pixel is not covered
    by a later figure, 1 where it is, 0 (and x = y = 0) outside the image."""
    keypoints = np.zeros((len(joints), len(JOINT_NAMES), 3), np.float32)
    if not joints:
        return keypoints
    height, width = masks[0].shape
    for index, points in enumerate(joints):
        columns, rows = np.floor(points).astype(np.int64).T
        inside = (columns >= 0) & (columns < width) & (rows >= 0) & (rows < height)
        covered = np.zeros(len(points), bool)
        for later in masks[index + 1:]:
            covered[inside] |= later[rows[inside], columns[inside]]
        keypoints[index, inside, :2] = points[inside]
        keypoints[index, inside, 2] = np.where(covered[inside], 1, 2)
    return keypoints


def draw_stickmen(image: np.ndarray, figures: list[tuple[np.ndarray, float]],
                  colours: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Draw figures [(joints (13, 2) in pixels, height in pixels)] in order into `image` (H, W, 3) uint8,
    each in its colour (3,), a later one over the earlier ones. Returns (boxes (N, 4) float32 of each
    figure's drawn pixels, zeros for a figure wholly outside; keypoints (N, 13, 3) float32, v as in the
    module docstring)."""
    masks = [_figure_mask(joints, height, image.shape[:2]) for joints, height in figures]
    for (joints, height), colour in zip(figures, colours):
        _draw_figure(image, joints, height, _shades(colour))
    boxes = np.array([mask_box(mask) if mask.any() else [0, 0, 0, 0] for mask in masks], np.float32).reshape(-1, 4)
    return boxes, _keypoints([joints for joints, _ in figures], masks)


def render_stickmen(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image of `size` (height, width) with 1-3 figures: (image (H, W, 3) uint8, boxes (N, 4), keypoints
    (N, 13, 3)). A figure placed so that it, or one it covers, keeps under MIN_VISIBLE_JOINTS visible joints
    is placed again, and left out after PLACEMENT_ATTEMPTS."""
    height, width = size
    image = textured_background(rng, height, width)
    figures, colours, masks = [], [], []
    for _ in range(rng.integers(FIGURE_COUNT[0], FIGURE_COUNT[1] + 1)):
        for _ in range(PLACEMENT_ATTEMPTS):
            figure_height = np.exp(rng.uniform(np.log(MIN_HEIGHT), np.log(MAX_HEIGHT))) * height
            pelvis = rng.uniform((0.05 * width, 0.1 * height), (0.95 * width, 0.95 * height))
            joints = random_pose(rng, figure_height, pelvis)
            mask = _figure_mask(joints, figure_height, size)
            keypoints = _keypoints([j for j, _ in figures] + [joints], masks + [mask])
            if ((keypoints[..., 2] == 2).sum(1) >= MIN_VISIBLE_JOINTS).all():
                figures.append((joints, figure_height))
                masks.append(mask)
                colours.append(contrasting_colour(rng, image[mask]))
                break
    boxes, keypoints = draw_stickmen(image, figures, colours)
    return image, boxes, keypoints


@lru_cache(maxsize=8)
def _cached_set(n: int, size: tuple[int, int], seed: int) -> tuple:
    # the pose task and every test read the same few sets: render them once per process
    rng = np.random.default_rng(seed)
    return tuple(render_stickmen(rng, size) for _ in range(n))


def stickmen_pose_data(imgsz: int = 256, n_train: int = 300, n_val: int = 60, n_test: int = 60) -> DetectionData:
    """The stick figures as pose data: images imgsz x imgsz, one class "person", STICKMEN_LAYOUT's 13 joints;
    the same every call."""
    splits = {}
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        splits[split] = [ImageAnnotations("", imgsz, imgsz, boxes, np.zeros(len(boxes), np.int64),
                                          np.zeros(len(boxes), bool), image, keypoints=keypoints)
                         for image, boxes, keypoints in _cached_set(n, (imgsz, imgsz), SEEDS[split])]
    return DetectionData([PERSON_CLASS], splits, keypoints=STICKMEN_LAYOUT)
