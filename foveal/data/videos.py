"""Embedded tracking data: deterministic synthetic videos whose ground truth names every object's identity.

`shapes_video`: the `shapes` classes, drawn as synthetic.py draws them, gliding in straight lines (some
slow, some fast, each slowly spinning) over one still textured background per sequence; they cross and
hide each other (a later object is nearer) and enter and leave through the borders. `polyps_video`: the
`polyps` scope panning and zooming over a mucosa, so the whole frame moves. Boxes are (x1, y1, x2, y2)
with x2 = max_x + 1, the bounds of each object's visible pixels, as for the scenes.
"""

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from ..errors import FovealError
from ..files import atomic_path, write_text
from .detection import DetectionData, ImageAnnotations
from .formats.mot import gt_lines
from .polyps import POLYP_CLASS, polyp_video_frames
from .synthetic import (MIN_PIXELS, MIN_VISIBLE_FRACTION, SHAPE_CLASSES, contrasting_colour, mask_box, shape_mask,
                        textured_background)
from .tracking import FrameTruth, TrackSequence

TRACKING_SETS = ("shapes_video", "polyps_video")
MOVERS = 10  # objects passing through one shapes sequence, a few of them in view at a time
# Diameters as a share of the shorter side: 26-102 px at 256 px, inside the 26-192 px of the 320 px
# `shapes` scenes, so a detector trained on data=shapes at one imgsz sees them at sizes it knows.
MIN_SCALE, MAX_SCALE = 0.1, 0.4
MIN_SPEED, MAX_SPEED = 1.5, 0.1  # px per frame, and a share of the shorter side per frame
MAX_SPIN = 0.05  # radians per frame
MIN_IN_VIEW = 0.25  # an object entering or leaving counts once this share of its whole shape is in the frame
FRAMES, FRAME_SIZE, FPS = 60, (256, 320), 12.0  # of a shapes sequence, (height, width): 5 s of video


@dataclass
class Mover:
    """One shape's straight path: at frame t its centre is through + velocity * (t - at), turned by spin * t."""

    label: int
    radius: float
    through: np.ndarray  # (2,) x, y: a point well inside the frame, passed at frame `at`
    at: int
    velocity: np.ndarray  # (2,) pixels per frame
    angle: float
    spin: float

    def mask(self, t: int, height: int, width: int):
        """(mask, window) of its pixels inside the frame at frame t; see synthetic.shape_mask."""
        centre = self.through + self.velocity * (t - self.at)
        return shape_mask(self.label, centre, self.radius, self.angle + self.spin * t, height, width)

    def area(self) -> int:
        """Pixels of its whole shape, as if the frame had no edges."""
        side = int(2 * self.radius) + 4
        return int(shape_mask(self.label, (side / 2, side / 2), self.radius, self.angle, side, side)[0].sum())


def random_mover(rng: np.random.Generator, frames: int, height: int, width: int) -> Mover:
    """A shape crossing the view at some frame, in any direction, at a log-uniform speed."""
    side = min(height, width)
    label = int(rng.integers(len(SHAPE_CLASSES)))
    radius = np.exp(rng.uniform(np.log(MIN_SCALE), np.log(MAX_SCALE))) * side / 2
    through = rng.uniform(radius, (width - radius, height - radius))  # wholly in view at frame `at`
    speed = np.exp(rng.uniform(np.log(MIN_SPEED), np.log(MAX_SPEED * side)))
    heading = rng.uniform(0, 2 * np.pi)
    velocity = speed * np.array([np.cos(heading), np.sin(heading)])
    return Mover(label, radius, through, int(rng.integers(frames)), velocity, rng.uniform(0, 2 * np.pi),
                 rng.uniform(-MAX_SPIN, MAX_SPIN))


@dataclass
class MovingScene:
    """What one shapes sequence is drawn from."""

    background: np.ndarray  # (H, W, 3) uint8, the same in every frame
    movers: list[Mover]  # in drawing order: a later one is nearer and hides what it covers
    colours: list[np.ndarray]  # (3,) uint8, one per mover


def moving_scene(seed: int, index: int, frames: int, size: tuple[int, int]) -> MovingScene:
    """Sequence `index` of seed `seed`: its own random stream, so it does not depend on how many are made."""
    rng = np.random.default_rng((seed, index))
    height, width = size
    background = textured_background(rng, height, width)
    movers = [random_mover(rng, frames, height, width) for _ in range(MOVERS)]
    # a colour that stands out from the background all along the object's path (it is wholly in view at `at`)
    colours = [contrasting_colour(rng, np.concatenate([background[window][mask] for mask, window in
                                                      (mover.mask(t, height, width) for t in range(frames))]))
               for mover in movers]
    return MovingScene(background, movers, colours)


def _shapes_sequence(seed: int, index: int, frames: int, size: tuple[int, int], fps: float,
                     step: int = 1) -> TrackSequence:
    """The sequence of moving_scene(seed, index, ...), keeping every `step`-th frame."""
    scene = moving_scene(seed, index, frames, size)
    height, width = size
    areas = [mover.area() for mover in scene.movers]
    images, truths, ids = [], [], {}  # ids: mover index -> its id, 1.. in the order they are first seen
    for t in range(0, frames, step):
        image = scene.background.copy()
        owner = np.full((height, width), -1, np.int32)  # which mover each pixel shows
        masks = [mover.mask(t, height, width) for mover in scene.movers]
        for k, (mask, window) in enumerate(masks):
            image[window][mask] = scene.colours[k]
            owner[window][mask] = k
        found = []
        for k, (mask, window) in enumerate(masks):
            visible = mask & (owner[window] == k)
            shown, in_frame = int(visible.sum()), int(mask.sum())
            if shown >= MIN_PIXELS and shown >= MIN_VISIBLE_FRACTION * in_frame and in_frame >= MIN_IN_VIEW * areas[k]:
                box = np.array(mask_box(visible), np.float32) + [window[1].start, window[0].start] * 2
                found.append((ids.setdefault(k, len(ids) + 1), box, scene.movers[k].label))
        images.append(image)
        truths.append(FrameTruth(np.array([f[0] for f in found], np.int64),
                                 np.array([f[1] for f in found], np.float32).reshape(-1, 4),
                                 np.array([f[2] for f in found], np.int64)))
    return TrackSequence(f"shapes-{index + 1:02d}", fps / step, width, height, images, truths, list(SHAPE_CLASSES))


def shapes_video(sequences: int = 4, frames: int = FRAMES, size: tuple[int, int] = FRAME_SIZE, seed: int = 0,
                 fps: float = FPS) -> list[TrackSequence]:
    """`sequences` videos shapes-01.. of `frames` frames of size (height, width), the same for the same seed.

    Each holds MOVERS shapes on straight paths (1.5 px to a tenth of the shorter side per frame), ids 1..
    per sequence in the order they are first seen. An object is in a frame's ground truth while at least
    MIN_IN_VIEW of its shape lies in the frame and nearer objects leave at least MIN_VISIBLE_FRACTION of
    its in-frame pixels (and MIN_PIXELS) visible: the `shapes` scenes' rule.
    """
    return [_shapes_sequence(seed, index, frames, tuple(size), fps) for index in range(sequences)]


def polyps_video(sequences: int = 2, frames: int = 48, size: tuple[int, int] = (256, 320), seed: int = 0,
                 fps: float = 12.0) -> list[TrackSequence]:
    """`sequences` videos polyps-01.. from polyps.polyp_video_frames (sequence i from seed + i, so polyps-01
    is the video examples/write_polyp_video.py writes): the scope pans and zooms, so the whole frame moves.
    A polyp's id is its index on the mucosa + 1, the same in every frame it is seen in."""
    height, width = size
    videos = []
    for index in range(sequences):
        shown = list(polyp_video_frames(frames, (height, width), seed + index))
        truths = [FrameTruth(ids, boxes, np.zeros(len(ids), np.int64)) for _, boxes, ids in shown]
        videos.append(TrackSequence(f"polyps-{index + 1:02d}", fps, width, height, [frame for frame, _, _ in shown],
                                    truths, [POLYP_CLASS]))
    return videos


@lru_cache(maxsize=2)
def _cached_sequences(name: str) -> tuple[TrackSequence, ...]:
    # the track mode, the detect data and the tests read the same sets: render them once per process
    return tuple(shapes_video() if name == "shapes_video" else polyps_video())


def tracking_sequences(name: str) -> list[TrackSequence]:
    """The embedded tracking set `name` with its defaults (shared: do not change the arrays in place)."""
    if name not in TRACKING_SETS:
        raise FovealError(f"data: no embedded tracking set '{name}'; embedded: {', '.join(TRACKING_SETS)}")
    return list(_cached_sequences(name))


def _frame_items(sequences: list[TrackSequence]) -> list[ImageAnnotations]:
    return [ImageAnnotations("", seq.width, seq.height, truth.boxes, truth.classes, np.zeros(len(truth.ids), bool),
                             frame) for seq in sequences for frame, truth in zip(seq.frames, seq.gt)]


def shapes_video_detection_data(every: int = 3) -> DetectionData:
    """Every `every`-th frame of shapes videos as detection data, split by sequence: train and val from
    sequences of their own, test the frames of the embedded tracking set (shapes_video's defaults)."""
    def split(sequences: int, seed: int) -> list[ImageAnnotations]:
        return _frame_items([_shapes_sequence(seed, i, FRAMES, FRAME_SIZE, FPS, every) for i in range(sequences)])

    test = [TrackSequence(s.name, s.fps, s.width, s.height, s.frames[::every], s.gt[::every], s.classes)
            for s in tracking_sequences("shapes_video")]
    return DetectionData(list(SHAPE_CLASSES), {"train": split(12, 1), "val": split(4, 2), "test": _frame_items(test)})


def write_track_video(sequence: TrackSequence, path) -> None:
    """Write `sequence` (its frames in memory) as an mp4 at `path` and, when it has ground truth, its
    MOTChallenge gt lines in a .txt of the same name beside it."""
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), sequence.fps,
                                 (sequence.width, sequence.height))
        for frame in sequence.frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        writer.release()
    if sequence.gt is not None:
        write_text(path.with_suffix(".txt"), "".join(gt_lines(number, truth) for number, truth in
                                                     enumerate(sequence.gt, 1)))
