"""Detection augmentation where boxes (and keypoints) move with the pixels: mosaic, affine, flip, HSV (letterbox:
ops/letterbox.py).

Images are (H, W, 3) uint8 numpy arrays, boxes (N, 4) float32 xyxy pixels and keypoints (pose data)
(N, K, 3) float32 x, y pixels and visibility, or None where the data has none. Written on
OpenCV rather than torchvision.transforms.v2 because mosaic and letterbox have no v2
counterpart and one affine warp per sample (scale + translate + rotate together) is what keeps
the data pipeline cheaper than the model on a 2-core CPU. Randomness comes from the `rng`
passed in, which the dataset derives from torch's RNG (seeded per epoch by the engine).
"""

import cv2
import numpy as np

from ..ops.letterbox import PAD_VALUE

def mosaic_matrices(shapes: list[tuple[int, int]], size: int, rng: np.random.Generator, scale=0.5, translate=0.1,
                    degrees=0.0) -> list[np.ndarray]:
    """The (2, 3) tile -> output matrix of each of four images of (height, width) `shapes` in a mosaic: the four
    tiled around a random centre of a 2size x 2size mosaic, of which a randomly scaled, rotated and shifted
    size x size window around the middle is the output.

    Each tile is fitted to `size` (its longer side) and warped straight into the output, one resampling;
    the window keeps the tiles' scale, so objects are as large as without mosaic on average (U(1 +-
    scale) only), unlike shrinking the whole 2size mosaic into the output (0.5x).
    """
    xc, yc = rng.uniform(0.5 * size, 1.5 * size, 2)  # where the four tiles meet
    window = np.vstack([random_affine_matrix(2 * size, 2 * size, size, rng, scale, translate, degrees, fit=False),
                        [0, 0, 1]])  # (3, 3): mosaic -> output
    matrices = []
    for k, (h, w) in enumerate(shapes):
        fit = size / max(h, w)
        x0 = xc - w * fit if k in (0, 2) else xc  # quadrants: 0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right
        y0 = yc - h * fit if k in (0, 1) else yc
        matrices.append((window @ np.array([[fit, 0, x0], [0, fit, y0], [0, 0, 1]]))[:2])
    return matrices


def mosaic_image(images: list[np.ndarray], matrices: list[np.ndarray], size: int) -> np.ndarray:
    """The size x size output of mosaic_matrices' tiles (the tiles do not overlap: each keeps its quadrant)."""
    out = np.full((size, size, 3), PAD_VALUE, np.uint8)
    for image, matrix in zip(images, matrices):
        shrunk = size < max(image.shape[:2])  # fitted to the mosaic smaller than it is: area-averaged
        # BORDER_TRANSPARENT: only the tile's own pixels are written, the other tiles' stay
        cv2.warpAffine(image, matrix, (size, size), dst=out, flags=cv2.INTER_AREA if shrunk else cv2.INTER_LINEAR,
                       borderMode=cv2.BORDER_TRANSPARENT)
    return out


def mosaic(samples: list, size: int, rng: np.random.Generator, scale=0.5, translate=0.1, degrees=0.0):
    """Four (image, boxes, labels, keypoints | None) samples as one size x size mosaic (mosaic_matrices), boxes and
    keypoints moved along; returns one sample of that form."""
    matrices = mosaic_matrices([image.shape[:2] for image, *_ in samples], size, rng, scale, translate, degrees)
    out = mosaic_image([image for image, *_ in samples], matrices, size)
    boxes = np.concatenate([warp_boxes(b, m) for (_, b, *_), m in zip(samples, matrices)]).astype(np.float32)
    labels = np.concatenate([labels for _, _, labels, _ in samples])
    boxes, keep = clip_and_filter(boxes, size, size, boxes.copy())
    if samples[0][3] is None:
        return out, boxes, labels[keep], None
    keypoints = np.concatenate([warp_keypoints(k, m, size, size) for (*_, k), m in zip(samples, matrices)])
    return out, boxes, labels[keep], keypoints[keep]


def random_affine_matrix(height: int, width: int, out_size: int, rng, scale=0.5, translate=0.1, degrees=0.0,
                         fit: bool = True):
    """(2, 3) matrix that fits the image to an out_size square (unless not `fit`: pixels keep their size
    and the output is a window on the image's middle), then scales by 1 +- scale, rotates by +- degrees
    (about the centre) and shifts by +- translate of out_size."""
    s = rng.uniform(1 - scale, 1 + scale) * (out_size / max(height, width) if fit else 1.0)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-degrees, degrees), s)
    matrix[:, 2] += np.array([out_size / 2 - width / 2, out_size / 2 - height / 2])  # centre to output centre
    matrix[:, 2] += rng.uniform(-translate, translate, 2) * out_size
    return matrix


def random_affine(image, boxes, labels, keypoints, out_size: int, rng, scale=0.5, translate=0.1, degrees=0.0):
    """Scale by 1 +- scale, rotate by +- degrees and shift by +- translate, into an out_size square; boxes and
    keypoints (None: none) move along. Returns (image, boxes, labels, keypoints)."""
    matrix = random_affine_matrix(*image.shape[:2], out_size, rng, scale, translate, degrees)
    out = cv2.warpAffine(image, matrix, (out_size, out_size), flags=cv2.INTER_LINEAR, borderValue=(PAD_VALUE,) * 3)
    if len(boxes) == 0:
        return out, boxes, labels, keypoints
    warped = warp_boxes(boxes, matrix)
    boxes, keep = clip_and_filter(warped, out_size, out_size, warped.copy())
    if keypoints is None:
        return out, boxes, labels[keep], None
    return out, boxes, labels[keep], warp_keypoints(keypoints[keep], matrix, out_size, out_size)


def warp_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(..., 2) points x, y through a (2, 3) affine matrix, as float64."""
    flat = points.reshape(-1, 2)
    return (np.c_[flat, np.ones(len(flat))] @ matrix.T).reshape(points.shape)


def warp_boxes(boxes: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(N, 4) xyxy boxes through a (2, 3) affine matrix: the box around their four moved corners."""
    corners = boxes.reshape(-1, 4)[:, [0, 1, 2, 1, 2, 3, 0, 3]].reshape(-1, 2)  # (4N, 2)
    moved = warp_points(corners, matrix).reshape(-1, 8)
    xs, ys = moved[:, 0::2], moved[:, 1::2]
    return np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1).astype(np.float32)


def warp_keypoints(keypoints: np.ndarray, matrix: np.ndarray, height: int, width: int) -> np.ndarray:
    """(N, K, 3) keypoints x, y, v through a (2, 3) affine matrix into a height x width image. A joint that
    lands outside it is no longer labelled: (0, 0, 0), as an unlabelled joint stays."""
    moved = keypoints.astype(np.float32)  # (a copy)
    moved[..., :2] = warp_points(keypoints[..., :2], matrix)
    x, y, v = moved[..., 0], moved[..., 1], moved[..., 2]
    inside = (v > 0) & (x >= 0) & (x < width) & (y >= 0) & (y < height)
    return np.where(inside[..., None], moved, np.float32(0))


def clip_and_filter(boxes, height, width, unclipped, min_size=2.0, min_visible=0.25):
    """Clip boxes to the image; drop the ones under min_size px or with < min_visible of their area left.
    Returns (the boxes kept, (N,) bool: which), the mask for what else is per object."""
    boxes = boxes.copy()
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    bw, bh = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    full = (unclipped[:, 2] - unclipped[:, 0]) * (unclipped[:, 3] - unclipped[:, 1])
    keep = (bw >= min_size) & (bh >= min_size) & (bw * bh >= min_visible * np.maximum(full, 1e-6))
    return boxes[keep], keep


def horizontal_flip(image, boxes):
    width = image.shape[1]
    flipped = boxes.copy()
    flipped[:, [0, 2]] = width - boxes[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), flipped


def flip_keypoints(keypoints: np.ndarray, width: int, flip_idx: list[int] | None = None) -> np.ndarray:
    """(N, K, 3) keypoints of an image flipped left-right (horizontal_flip): x -> width - x, and joint k takes
    joint flip_idx[k]'s values, so that a left wrist is still called left (None: no joint changes name)."""
    flipped = keypoints[:, flip_idx] if flip_idx is not None else keypoints.copy()
    flipped[..., 0] = np.where(flipped[..., 2] > 0, width - flipped[..., 0], 0)  # unlabelled joints stay at 0
    return flipped


def hsv_jitter(image, rng, hue=0.015, saturation=0.7, value=0.4):
    """Random gains on hue, saturation and value, applied through lookup tables (fast)."""
    if not (hue or saturation or value):
        return image
    gains = rng.uniform(-1, 1, 3) * (hue, saturation, value) + 1
    h, s, v = cv2.split(cv2.cvtColor(image, cv2.COLOR_RGB2HSV))
    x = np.arange(256, dtype=np.float32)
    lut_h = ((x * gains[0]) % 180).astype(np.uint8)
    lut_s = np.clip(x * gains[1], 0, 255).astype(np.uint8)
    lut_v = np.clip(x * gains[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(h, lut_h), cv2.LUT(s, lut_s), cv2.LUT(v, lut_v)))
    return cv2.cvtColor(merged, cv2.COLOR_HSV2RGB)
