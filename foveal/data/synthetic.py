"""Embedded "shapes" data: deterministic synthetic images for classification, detection, segmentation.

Tests and the demo use these instead of downloaded data sets. Everything random comes from the
numpy Generator passed in, so one seed gives byte-identical arrays whatever the global state.
Shapes are drawn without anti-aliasing, so an instance mask is exactly the pixels painted.
Boxes are (x1, y1, x2, y2) in pixels with x2 = max_x + 1, so x2 - x1 counts pixels.
"""

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

SHAPE_CLASSES = ("circle", "square", "triangle", "star", "hexagon", "cross")
MIN_VISIBLE_FRACTION = 0.4  # an occluded object keeps at least this share of its own pixels
MIN_PIXELS = 6  # fewer visible pixels than this is not a recognisable object
MIN_CONTRAST = 90.0  # RGB distance an object keeps from most of what it covers
PLACEMENT_ATTEMPTS = 20


def _regular_polygon(corners: int, phase: float = 0.0) -> np.ndarray:
    """(corners, 2) points on the unit circle."""
    angles = phase + 2 * np.pi * np.arange(corners) / corners
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _star(points: int = 5, inner_radius: float = 0.45) -> np.ndarray:
    """(2 * points, 2) outline alternating outer tips and inner corners."""
    return _regular_polygon(2 * points) * np.tile([1.0, inner_radius], points)[:, None]


def _cross(half_width: float = 0.3) -> np.ndarray:
    """(12, 2) outline of a plus sign, scaled so its outer corners touch the unit circle."""
    arm = np.array([[1.0, -half_width], [1.0, half_width], [half_width, half_width]])
    turn = np.array([[0.0, 1.0], [-1.0, 0.0]])  # row vectors times this rotate by +90 degrees
    outline = np.concatenate([arm @ np.linalg.matrix_power(turn, k) for k in range(4)])
    return outline / np.hypot(1.0, half_width)


# Each outline fits the unit circle, so `radius` below is the circumscribed radius of every class.
_OUTLINES = (
    _regular_polygon(48),
    _regular_polygon(4, np.pi / 4),
    _regular_polygon(3, -np.pi / 2),
    _star(),
    _regular_polygon(6),
    _cross(),
)


def shape_mask(label: int, center, radius: float, angle: float, height: int, width: int):
    """(mask, window): the (h, w) bool pixels of one rotated shape, drawn by PIL without
    anti-aliasing, inside window = (rows, columns), the slices of the (H, W) image it occupies.

    Drawing only the shape's own window keeps the cost independent of the image size. A shape partly
    outside the image is cut at its edges; one wholly outside gives an empty mask and window.
    """
    cos, sin = np.cos(angle), np.sin(angle)
    points = _OUTLINES[label] @ np.array([[cos, sin], [-sin, cos]]) * radius + center
    left, top = np.maximum(np.floor(points.min(axis=0)).astype(int), 0)
    right, bottom = np.minimum(np.ceil(points.max(axis=0)).astype(int) + 1, (width, height))
    right, bottom = max(right, left), max(bottom, top)  # a shape beyond the image: an empty window
    canvas = Image.new("L", (right - left, bottom - top))
    ImageDraw.Draw(canvas).polygon((points - (left, top)).ravel().tolist(), fill=1)
    return np.asarray(canvas, dtype=bool), (slice(top, bottom), slice(left, right))


def _smooth_noise(rng: np.random.Generator, grid: int, channels: int, spread: float, height: int, width: int):
    """(H, W, channels) int16 noise with mean about 0, upsampled from a (grid, grid) field."""
    coarse = np.clip(128 + rng.normal(0, spread, (grid, grid, channels)), 0, 255).astype(np.uint8)
    mode = "RGB" if channels == 3 else "L"
    field = Image.fromarray(coarse.squeeze(-1) if channels == 1 else coarse, mode)
    smooth = np.asarray(field.resize((width, height), Image.BICUBIC), dtype=np.int16)
    return smooth.reshape(height, width, channels) - 128


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 texture: a smooth colour field, finer blotches and thin stroke clutter.

    Clutter is only thin open strokes, never a filled polygon, so it cannot pass for a shape.
    """
    colour = rng.integers(30, 226, 3).astype(np.int16)
    texture = colour + _smooth_noise(rng, int(rng.integers(2, 5)), 3, 45, height, width)
    texture += _smooth_noise(rng, int(rng.integers(6, 12)), 1, 18, height, width)
    image = Image.fromarray(np.clip(texture, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    max_width = 1 + min(height, width) // 100
    for _ in range(rng.integers(0, 6)):
        points = rng.uniform(-0.2, 1.2, (int(rng.integers(2, 5)), 2)) * (width, height)
        stroke_colour = tuple(rng.integers(0, 256, 3).tolist())
        draw.line(points.ravel().tolist(), fill=stroke_colour, width=int(rng.integers(1, max_width + 1)))
    return np.array(image)


def contrasting_colour(rng: np.random.Generator, covered: np.ndarray) -> np.ndarray:
    """(3,) uint8 colour far from most of `covered` (P, 3), the pixels the object will hide.

    Scoring the 10th percentile, not the mean, also keeps it apart from an object it overlaps.
    """
    candidates = rng.integers(0, 256, (8, 3))
    sample = covered[:: max(1, len(covered) // 256)].astype(np.float32)
    distance = np.linalg.norm(candidates[:, None, :] - sample[None], axis=-1)  # (8, P)
    tenth = distance.shape[1] // 10
    score = np.partition(distance, tenth, axis=1)[:, tenth]
    good = score >= MIN_CONTRAST
    return candidates[np.argmax(good) if good.any() else np.argmax(score)].astype(np.uint8)


@dataclass
class Scene:
    """One annotated image. Masks never overlap: a later object hides what it covers.

    image (H, W, 3) uint8; boxes (N, 4) float32 x1, y1, x2, y2 tight around the visible pixels,
    x2 = max_x + 1; labels (N,) int64 indices into SHAPE_CLASSES; masks (N, H, W) bool.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray
    masks: np.ndarray

    def semantic_mask(self) -> np.ndarray:
        """(H, W) uint8: 0 for background, class index + 1 where an object is visible."""
        semantic = np.zeros(self.image.shape[:2], np.uint8)
        for mask, label in zip(self.masks, self.labels):
            semantic[mask] = label + 1
        return semantic


def mask_box(mask: np.ndarray) -> list[int]:
    """x1, y1, x2, y2 of a non-empty (H, W) bool mask, with x2 = max_x + 1."""
    columns, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return [columns[0], rows[0], columns[-1] + 1, rows[-1] + 1]


def _hidden_counts(covered_owners: np.ndarray, instances: int) -> np.ndarray:
    """(instances,) how many pixels of each instance `covered_owners` (P,) would hide; -1 = background."""
    return np.bincount(covered_owners + 1, minlength=instances + 1)[1:]


def _random_shape(rng: np.random.Generator, height: int, width: int, min_scale: float, max_scale: float):
    """(label, mask, window) of a random shape lying inside the image; see shape_mask."""
    label = int(rng.integers(len(SHAPE_CLASSES)))
    radius = np.exp(rng.uniform(np.log(min_scale), np.log(max_scale))) * min(height, width) / 2
    center = rng.uniform(radius, (width - radius, height - radius))
    return (label, *shape_mask(label, center, radius, rng.uniform(0, 2 * np.pi), height, width))


def render_scene(
    rng: np.random.Generator,
    size: int | tuple[int, int],
    max_objects: int = 6,
    min_objects: int = 0,
    min_scale: float = 0.08,
    max_scale: float = 0.6,
) -> Scene:
    """A textured image with min_objects..max_objects shapes; size is an int or (height, width).

    Each object's diameter is min_scale..max_scale (log-uniform) of the shorter side, and it lies
    inside the image. A placement that would hide too much of an earlier object is retried, and
    the object is skipped after PLACEMENT_ATTEMPTS, so a crowded scene may hold fewer objects.
    """
    height, width = (size, size) if isinstance(size, int) else size
    image = textured_background(rng, height, width)
    owner = np.full((height, width), -1, np.int32)  # index of the instance each pixel shows
    labels, full_areas, visible_areas = [], np.zeros(0, np.int64), np.zeros(0, np.int64)
    for _ in range(rng.integers(min_objects, max_objects + 1)):
        for _ in range(PLACEMENT_ATTEMPTS):
            label, mask, window = _random_shape(rng, height, width, min_scale, max_scale)
            covered_owners = owner[window][mask]
            visible_after = visible_areas - _hidden_counts(covered_owners, len(labels))
            needed = np.maximum(MIN_VISIBLE_FRACTION * full_areas, MIN_PIXELS)
            if len(covered_owners) >= MIN_PIXELS and np.all(visible_after >= needed):
                image[window][mask] = contrasting_colour(rng, image[window][mask])
                owner[window][mask] = len(labels)
                labels.append(label)
                full_areas = np.append(full_areas, len(covered_owners))
                visible_areas = np.append(visible_after, len(covered_owners))
                break
    masks = owner[None] == np.arange(len(labels))[:, None, None]  # (N, H, W)
    boxes = np.array([mask_box(mask) for mask in masks], np.float32).reshape(-1, 4)
    return Scene(image, boxes, np.array(labels, np.int64), masks)


def classification_sample(rng: np.random.Generator, size: int, label: int | None = None) -> tuple[np.ndarray, int]:
    """((size, size, 3) uint8 image, class index): one shape, 35-90% of the image, near the centre."""
    label = int(rng.integers(len(SHAPE_CLASSES))) if label is None else int(label)
    image = textured_background(rng, size, size)
    radius = rng.uniform(0.35, 0.9) * size / 2
    center = size / 2 + rng.uniform(-1, 1, 2) * (size / 2 - radius)  # always fully inside
    mask, window = shape_mask(label, center, radius, rng.uniform(0, 2 * np.pi), size, size)
    image[window][mask] = contrasting_colour(rng, image[window][mask])
    return image, label


def make_classification_set(n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, size, size, 3) uint8 images and (n,) int64 labels, balanced across SHAPE_CLASSES."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    images = np.empty((n, size, size, 3), np.uint8)
    for i, label in enumerate(labels):
        images[i] = classification_sample(rng, size, label)[0]
    return images, labels


def make_scene_set(n: int, size: int | tuple[int, int], seed: int, **render_kwargs) -> list[Scene]:
    """n scenes from render_scene, the same for the same seed and keyword arguments."""
    rng = np.random.default_rng(seed)
    return [render_scene(rng, size, **render_kwargs) for _ in range(n)]
