"""Embedded "polyps" data: deterministic synthetic endoscopy frames for detection and segmentation.

A frame is pink-red mucosa (smooth colour noise, darker vessels) seen through a round, vignetted
field of view, with specular highlights, sometimes a mild motion blur, and 0-3 raised elliptical
polyps shaded as domes lit from above. Each polyp's mask is exactly the pixels of its ellipse
(drawn without anti-aliasing), polyps never overlap, and boxes are the masks' bounds with
x2 = max_x + 1 (foveal/data/synthetic.py's convention). Everything random comes from the numpy
Generator passed in, so one seed gives byte-identical frames.
"""

from functools import lru_cache

import cv2
import numpy as np

from ..files import atomic_path
from .detection import DetectionData, ImageAnnotations
from .segmentation import BACKGROUND, MaskedImage, SegmentationData
from .synthetic import Scene, mask_box

POLYP_CLASS = "polyp"
FRAME_SIZES = ((256, 256), (256, 288), (256, 320), (288, 288), (288, 320), (320, 320))  # (height, width)
MIN_DIAMETER, MAX_DIAMETER = 0.05, 0.30  # a polyp's long axis, as a share of the frame's shorter side
POLYP_COUNT_ODDS = (0.1, 0.4, 0.3, 0.2)  # of 0, 1, 2, 3 polyps: most frames hold something to find
PLACEMENT_ATTEMPTS = 20
LIGHT = np.array([0.0, -0.6, 0.8], np.float32)  # from above (image y points down) and from the camera


@lru_cache(maxsize=1)
def _grain_tile() -> np.ndarray:
    """(640, 640, 1) float32 fixed noise; frames take random crops of it, far cheaper than new noise each."""
    return np.random.default_rng(0).standard_normal((640, 640, 1), dtype=np.float32)


def _mucosa(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) float32 RGB tissue: a pink-red colour that drifts slowly, fine grain and darker vessels."""
    colour = rng.uniform((175, 70, 70), (225, 105, 100)).astype(np.float32)
    # colour blotches and finer brightness blotches, combined on a 12 x 12 grid and resized once
    blotches = cv2.resize(rng.standard_normal((4, 4, 3), dtype=np.float32), (12, 12), interpolation=cv2.INTER_CUBIC)
    brightness = 1 + 0.1 * rng.standard_normal((12, 12, 1), dtype=np.float32)
    coarse = (colour + blotches * np.array([12, 7, 9], np.float32)) * brightness
    image = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    top, left = rng.integers(0, 640 - height + 1), rng.integers(0, 640 - width + 1)
    image += 3 * _grain_tile()[top:top + height, left:left + width]  # the same in every channel
    vessels = np.zeros((height, width), np.uint8)
    for _ in range(rng.integers(3, 9)):
        # a random walk that turns slowly, so the line meanders like a capillary
        steps = int(rng.integers(6, 14))
        turns = np.cumsum(rng.normal(0, 0.5, steps)) + rng.uniform(0, 2 * np.pi)
        step = rng.uniform(0.04, 0.09) * max(height, width)
        start = rng.uniform((0, 0), (width, height))
        points = start + np.cumsum(step * np.stack([np.cos(turns), np.sin(turns)], 1), axis=0)
        cv2.polylines(vessels, [points.astype(np.int32)], False, int(rng.integers(120, 256)),
                      int(rng.integers(1, 3)), cv2.LINE_AA)
    rows, columns = np.nonzero(cv2.GaussianBlur(vessels, (3, 3), 0))  # only these few pixels change
    darkening = vessels[rows, columns, None].astype(np.float32) / 255  # (P, 1); unblurred keeps them crisp
    image[rows, columns] *= 1 - darkening * np.array([0.3, 0.5, 0.4], np.float32)  # darker, more purple
    return image


@lru_cache(maxsize=16)
def _vignette(height: int, width: int) -> np.ndarray:
    """(H, W, 1) float32 brightness: 1 in the middle, falling off towards a round, black-cornered field of view."""
    ys, xs = np.mgrid[:height, :width].astype(np.float32)
    radius = np.hypot((xs + 0.5) / (width / 2) - 1, (ys + 0.5) / (height / 2) - 1)  # 1 at mid-edges, 1.41 in corners
    falloff = np.clip((1.3 - radius) / 0.55, 0, 1)
    return (falloff * falloff * (3 - 2 * falloff))[..., None]  # smoothstep: no visible ring


def _polyp_mask(center, axes, angle: float, height: int, width: int) -> np.ndarray:
    """(H, W) bool pixels of a filled ellipse (axes are half-lengths, angle in degrees), not anti-aliased."""
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (round(center[0]), round(center[1])), (round(axes[0]), round(axes[1])), angle, 0, 360, 1, -1,
                cv2.LINE_8)
    return mask.astype(bool)


def _shade_polyp(rng: np.random.Generator, image: np.ndarray, mask: np.ndarray, center, axes, angle: float):
    """Paint the polyp under `mask` into `image` (H, W, 3) float32 as a dome: the tissue's own texture,
    tinted lighter, lit from above, darker towards the rim. Returns (x, y), its brightest point."""
    rows, columns = np.nonzero(mask)
    dx, dy = columns + 0.5 - center[0], rows + 0.5 - center[1]
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    u, v = (dx * cos + dy * sin) / axes[0], (-dx * sin + dy * cos) / axes[1]  # ellipse coordinates, rim at 1
    dome = np.sqrt(np.clip(1 - u * u - v * v, 0, 1))  # height above the mucosa: 1 at the top, 0 at the rim
    # a hemisphere's normal is (u, v, dome); u and v turned back to image axes
    normals = np.stack([u * cos - v * sin, u * sin + v * cos, dome], 1)
    normals /= np.linalg.norm(normals, axis=1, keepdims=True) + 1e-6
    light = np.clip(normals @ LIGHT, 0, 1)
    rim = 0.65 + 0.35 * np.sqrt(dome)
    tint = rng.uniform((1.02, 0.95, 1.0), (1.15, 1.15, 1.2)).astype(np.float32)  # paler, pinker than the mucosa
    shading = (0.55 + 0.65 * light) * rim
    image[rows, columns] *= tint * shading[:, None].astype(np.float32)
    top = int(np.argmax(light))
    return columns[top], rows[top]


def _add_highlights(rng: np.random.Generator, image: np.ndarray, spots: list):
    """Blend small blurred white blobs into `image` (H, W, 3) float32: on each polyp's lit top, and a few
    on the wet mucosa near the middle."""
    height, width = image.shape[:2]
    layer = np.zeros((height, width), np.float32)
    centre_spots = [rng.uniform((0.15 * width, 0.15 * height), (0.85 * width, 0.85 * height))
                    for _ in range(rng.integers(2, 8))]
    for x, y in [*spots, *centre_spots]:
        axes = (int(rng.integers(1, 5)), int(rng.integers(1, 3)))
        cv2.ellipse(layer, (int(x), int(y)), axes, float(rng.uniform(0, 180)), 0, 360, 1.0, -1, cv2.LINE_AA)
    layer = cv2.GaussianBlur(layer, (5, 5), 0)
    rows, columns = np.nonzero(layer)
    alpha = layer[rows, columns, None]  # (P, 1)
    image[rows, columns] = image[rows, columns] * (1 - alpha) + 255 * alpha


def _motion_blur(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    """`image` smeared along a random direction over 3-7 pixels, as when the scope moves."""
    length = int(rng.integers(3, 8))
    kernel = np.zeros((length, length), np.float32)
    angle = rng.uniform(0, np.pi)
    half = (length - 1) / 2
    end = half * np.array([np.cos(angle), np.sin(angle)])
    start, stop = np.round(half - end).astype(int), np.round(half + end).astype(int)
    cv2.line(kernel, tuple(start.tolist()), tuple(stop.tolist()), 1.0, 1)
    return cv2.filter2D(image, -1, kernel / kernel.sum())


def _place_polyps(rng: np.random.Generator, image: np.ndarray, count: int, min_diameter: float,
                  max_diameter: float, inner: float) -> tuple[list[np.ndarray], list]:
    """Shade up to `count` non-touching polyps into `image`, centres within `inner` of the view's radius;
    returns (their (H, W) bool masks, their highlight spots). A polyp that finds no free place is left out."""
    height, width = image.shape[:2]
    side = min(height, width)
    occupied = np.zeros((height, width), bool)
    masks, spots = [], []
    for _ in range(count):
        for _ in range(PLACEMENT_ATTEMPTS):
            long_axis = np.exp(rng.uniform(np.log(min_diameter), np.log(max_diameter))) * side / 2
            axes = (long_axis, long_axis * rng.uniform(0.65, 1.0))
            offset = rng.uniform(-inner, inner, 2) * (width / 2, height / 2)
            center = (width / 2 + offset[0], height / 2 + offset[1])
            margin = long_axis + 1  # the whole polyp in the frame, so its box is its full extent
            inside = margin <= center[0] <= width - margin and margin <= center[1] <= height - margin
            if not inside or np.hypot(*(offset / (width / 2, height / 2))) > inner:
                continue
            angle = float(rng.uniform(0, 180))
            mask = _polyp_mask(center, axes, angle, height, width)
            if mask.sum() < 9 or (cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) & occupied).any():
                continue
            spots.append(_shade_polyp(rng, image, mask, center, axes, angle))
            occupied |= mask
            masks.append(mask)
            break
    return masks, spots


def _scene(image: np.ndarray, masks: list[np.ndarray]) -> Scene:
    """A Scene of uint8 `image` with boxes from `masks` (x2 = max_x + 1), every label the polyp class (0)."""
    height, width = image.shape[:2]
    stacked = np.array(masks, bool).reshape(-1, height, width)
    boxes = [mask_box(mask) for mask in stacked]
    return Scene(image, np.array(boxes, np.float32).reshape(-1, 4), np.zeros(len(stacked), np.int64), stacked)


def render_polyp_frame(rng: np.random.Generator, size: tuple[int, int] | None = None) -> Scene:
    """One endoscopy frame of `size` (height, width), or of a size drawn from FRAME_SIZES, with 0-3 polyps."""
    height, width = size or FRAME_SIZES[int(rng.integers(len(FRAME_SIZES)))]
    image = _mucosa(rng, height, width)
    count = int(rng.choice(len(POLYP_COUNT_ODDS), p=POLYP_COUNT_ODDS))
    masks, spots = _place_polyps(rng, image, count, MIN_DIAMETER, MAX_DIAMETER, inner=0.65)
    _add_highlights(rng, image, spots)
    if rng.random() < 0.3:
        image = _motion_blur(rng, image)
    image = image * _vignette(height, width)
    return _scene(np.clip(image, 0, 255).astype(np.uint8), masks)


def make_polyp_set(n: int, seed: int) -> list[Scene]:
    """n frames from render_polyp_frame, the same for the same seed."""
    rng = np.random.default_rng(seed)
    return [render_polyp_frame(rng) for _ in range(n)]


@lru_cache(maxsize=8)
def _cached_set(n: int, seed: int) -> tuple[Scene, ...]:
    # the train and segment tasks, and every test, read the same few sets: render them once per process
    return tuple(make_polyp_set(n, seed))


def _splits(n_train: int, n_val: int, make_item) -> dict[str, list]:
    sets = {"train": (n_train, 31), "val": (n_val, 32), "test": (n_val, 33)}
    return {split: [make_item(scene) for scene in _cached_set(n, seed)] for split, (n, seed) in sets.items()}


def polyps_detection_data(n_train: int = 160, n_val: int = 40) -> DetectionData:
    """The synthetic polyp frames as detection data: one class, boxes exact from the masks."""
    return DetectionData([POLYP_CLASS], _splits(n_train, n_val, lambda s: ImageAnnotations(
        "", s.image.shape[1], s.image.shape[0], s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)))


def polyps_segmentation_data(n_train: int = 160, n_val: int = 40,
                             instances: bool = False) -> SegmentationData | DetectionData:
    """The synthetic polyp frames as binary semantic masks (background, polyp), or as instances."""
    if instances:
        return DetectionData([POLYP_CLASS], _splits(n_train, n_val, lambda s: ImageAnnotations(
            "", s.image.shape[1], s.image.shape[0], s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image,
            s.masks)))
    return SegmentationData([BACKGROUND, POLYP_CLASS], _splits(n_train, n_val, lambda s: MaskedImage(
        "", "", s.image.shape[1], s.image.shape[0], s.image, s.semantic_mask())))


def polyp_video_frames(frames: int = 48, size: tuple[int, int] = (256, 320), seed: int = 0):
    """Yield (frame, boxes, ids) of a scope slowly panning and zooming over a larger synthetic mucosa with polyps.

    frame: (H, W, 3) uint8 RGB of size (height, width); boxes: (N, 4) float32 of the polyps in view,
    exact: the bounds of their masks moved by the same camera, cut to where the vignette leaves at least
    a quarter of the light (a polyp with under 16 such pixels is left out); ids: (N,) int64, each polyp's
    index on the canvas + 1, the same in every frame it is seen in.
    """
    rng = np.random.default_rng(seed)
    height, width = size
    canvas = _mucosa(rng, 2 * height, 2 * width)
    masks, spots = _place_polyps(rng, canvas, 5, 0.06, 0.16, inner=0.7)  # of the canvas: 9-35% of a frame side
    _add_highlights(rng, canvas, spots)
    canvas = np.clip(canvas, 0, 255)
    vignette = _vignette(height, width)
    lit = vignette[..., 0] >= 0.25
    for t in np.linspace(0, 1, frames):
        zoom = 0.75 + 0.35 * t  # frame pixels per canvas pixel: the scope moves closer
        # the view stays inside the canvas, so no polyp is seen without its mask
        centre = np.array([width * (0.7 + 0.6 * t), height * (0.75 + 0.4 * t + 0.08 * np.sin(2 * np.pi * t))])
        camera = np.array([[zoom, 0, width / 2 - zoom * centre[0]], [0, zoom, height / 2 - zoom * centre[1]]])
        frame = cv2.warpAffine(canvas, camera, (width, height), flags=cv2.INTER_LINEAR)
        seen = [(cv2.warpAffine(m.astype(np.uint8), camera, (width, height), flags=cv2.INTER_NEAREST) > 0) & lit
                for m in masks]
        kept = [index for index, m in enumerate(seen) if m.sum() >= 16]
        boxes = _scene(frame, [seen[index] for index in kept]).boxes
        yield np.clip(frame * vignette, 0, 255).astype(np.uint8), boxes, np.array(kept, np.int64) + 1


def write_polyp_video(path, frames: int = 48, size: tuple[int, int] = (256, 320), fps: float = 12.0,
                      seed: int = 0) -> list[np.ndarray]:
    """Write polyp_video_frames as an mp4 (size is (height, width)); returns each frame's (N, 4) boxes."""
    height, width = size
    boxes = []
    with atomic_path(path) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
        for frame, frame_boxes, _ in polyp_video_frames(frames, size, seed):
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            boxes.append(frame_boxes)
        writer.release()
    return boxes
