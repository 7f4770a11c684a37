"""Drawing detections on images (for reports, and for annotated images and video from predict)."""

import colorsys

import cv2
import numpy as np


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes, labels, classes: list[str], scores=None, colour=None,
               line_width: int = 2, captions: bool = True, ids=None) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB `image` with xyxy boxes and (unless not `captions`) 'class score' captions;
    with track `ids`, each box in its id's colour and captioned '#id class score'."""
    out = np.ascontiguousarray(image).copy()
    font_scale = max(0.35, line_width / 5)
    for i, (box, label) in enumerate(zip(np.asarray(boxes, np.float32), np.asarray(labels))):
        c = colour or class_colour(int(label) if ids is None else int(ids[i]))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, line_width, cv2.LINE_AA)
        if not captions:
            continue
        text = ("" if ids is None else f"#{int(ids[i])} ") + classes[int(label)] + \
            (f" {float(scores[i]):.2f}" if scores is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), c, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


IGNORE_COLOUR = (60, 60, 60)
GRID_SIDE = 256  # reports' image grids enlarge smaller images to this short side before drawing captions


def overlay_classes(image: np.ndarray, labels: np.ndarray, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB `image` with each pixel of class k >= 1 tinted class_colour(k);
    class 0 (background) stays as it is, `ignore_index` pixels are shaded dark grey."""
    palette = np.array([class_colour(k) for k in range(256)], np.float32)
    palette[ignore_index] = IGNORE_COLOUR
    tinted = image.astype(np.float32)
    on = labels > 0
    tinted[on] = (1 - alpha) * tinted[on] + alpha * palette[labels[on]]
    return tinted.round().astype(np.uint8)


def draw_instances(image: np.ndarray, masks: np.ndarray, boxes, labels, classes: list[str], scores=None,
                   alpha: float = 0.45, line_width: int = 2, ids=None) -> np.ndarray:
    """A copy of `image` with each (N, H, W) bool mask tinted and outlined in its class colour (its track id's
    with `ids`), plus its box and caption as draw_boxes draws them."""
    out = image.astype(np.float32)
    colours = [class_colour(int(k)) for k in (labels if ids is None else ids)]
    for mask, colour in zip(masks, colours):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(colour, np.float32)
    out = out.round().astype(np.uint8)
    for mask, colour in zip(masks, colours):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, colour, max(1, line_width // 2), cv2.LINE_AA)
    return draw_boxes(out, boxes, labels, classes, scores, line_width=max(1, line_width // 2), ids=ids)


def draw_trails(image: np.ndarray, trails: dict, line_width: int = 2) -> np.ndarray:
    """`image` (drawn on in place) with each track's recent centres, {id: [(x, y), ...]}, as a line in its colour."""
    for track_id, points in trails.items():
        if len(points) > 1:
            cv2.polylines(image, [np.round(np.asarray(points)).astype(np.int32)], False, class_colour(int(track_id)),
                          line_width, cv2.LINE_AA)
    return image


def draw_line(image: np.ndarray, line, text: str, line_width: int = 2) -> np.ndarray:
    """`image` (drawn on in place) with the counting line x1, y1, x2, y2 and its counts written beside it."""
    x1, y1, x2, y2 = (int(round(v)) for v in line)
    cv2.line(image, (x1, y1), (x2, y2), (255, 255, 255), line_width, cv2.LINE_AA)
    cv2.putText(image, text, (min(x1, x2), max(12, min(y1, y2) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                max(0.35, line_width / 5), (255, 255, 255), 1, cv2.LINE_AA)
    return image


def repeat_pixels(image: np.ndarray, k: int) -> np.ndarray:
    """Each pixel as a k x k block: the image k times larger, no pixel made up."""
    return np.repeat(np.repeat(image, k, 0), k, 1) if k > 1 else image


def enlarged(image: np.ndarray, min_side: int) -> tuple[np.ndarray, int]:
    """(image with pixels repeated k times, k): the smallest whole k that brings the short side to `min_side`,
    so that captions drawn on a small image cover less of it."""
    k = max(1, -(-min_side // max(1, min(image.shape[:2]))))
    return repeat_pixels(image, k), k


def labelled(image: np.ndarray, lines: list[str], rows: int = 0, min_width: int = 0) -> np.ndarray:
    """`image` (enlarged to `min_width` first, see `enlarged`) under a white strip of `rows` (at least the
    lines') text lines: labels beside the content, never over it. The strip's height depends only on the
    image's width and `rows`, so the frames of a video keep one size."""
    image = repeat_pixels(image, -(-min_width // image.shape[1]))
    scale = min(max(image.shape[1] / 400, 0.35), 0.8)
    (_, text_height), base = cv2.getTextSize("Ag", cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    line = text_height + base + 4
    strip = np.full((line * max(rows, len(lines)) + 4, image.shape[1], 3), 255, np.uint8)
    for row, text in enumerate(lines):
        cv2.putText(strip, text, (4, 2 + line * row + text_height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1,
                    cv2.LINE_AA)
    pixels = image if image.ndim == 3 else image[..., None]
    return np.concatenate([strip, np.repeat(pixels, 3 // pixels.shape[2], 2)], 0)


SIDE_COLOURS = ((255, 200, 0), (0, 220, 255), (255, 60, 200))  # a joint in the middle, on the left, on the right


def draw_skeletons(image: np.ndarray, keypoints, skeleton, sides=None, conf: float = 0.5,
                   line_width: int = 2) -> np.ndarray:
    """`image` (drawn on in place) with each object's (K, 3) joints (x, y, score) scored at least `conf` as dots
    and the `skeleton`'s limbs (joint pairs) between two such joints as lines; `sides` (K,): 0 middle, 1 left,
    2 right, so that a figure's left and right show apart (a limb takes its end joints' side, middle if they
    differ)."""
    sides = np.zeros(np.shape(keypoints)[1] if np.ndim(keypoints) == 3 else 0, np.int64) if sides is None else sides
    radius = max(2, line_width + 1)
    for joints in np.asarray(keypoints, np.float32).reshape(-1, len(sides), 3):
        shown = joints[:, 2] >= conf
        for a, b in skeleton:
            if shown[a] and shown[b]:
                side = sides[a] if sides[a] == sides[b] else 0
                cv2.line(image, tuple(int(round(v)) for v in joints[a, :2]), tuple(int(round(v)) for v in joints[b, :2]),
                         SIDE_COLOURS[side], line_width, cv2.LINE_AA)
        for (x, y, _), side in zip(joints[shown], np.asarray(sides)[shown]):
            cv2.circle(image, (int(round(x)), int(round(y))), radius, SIDE_COLOURS[side], -1, cv2.LINE_AA)
    return image
