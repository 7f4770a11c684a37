"""Drawing detections on images (for reports, and for annotated images and video from predict)."""

import colorsys

import cv2
import numpy as np


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes, labels, classes: list[str], scores=None, colour=None,
               line_width: int = 2, captions: bool = True) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB `image` with xyxy boxes and (unless not `captions`) 'class score' captions."""
    out = np.ascontiguousarray(image).copy()
    font_scale = max(0.35, line_width / 5)
    for i, (box, label) in enumerate(zip(np.asarray(boxes, np.float32), np.asarray(labels))):
        c = colour or class_colour(int(label))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, line_width, cv2.LINE_AA)
        if not captions:
            continue
        text = classes[int(label)] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), c, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


IGNORE_COLOUR = (60, 60, 60)


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
                   alpha: float = 0.45, line_width: int = 2) -> np.ndarray:
    """A copy of `image` with each (N, H, W) bool mask tinted and outlined in its class colour, plus
    its box and 'class score' caption."""
    out = image.astype(np.float32)
    for mask, label in zip(masks, labels):
        out[mask] = (1 - alpha) * out[mask] + alpha * np.array(class_colour(int(label)), np.float32)
    out = out.round().astype(np.uint8)
    for mask, label in zip(masks, labels):
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, class_colour(int(label)), max(1, line_width // 2), cv2.LINE_AA)
    return draw_boxes(out, boxes, labels, classes, scores, line_width=max(1, line_width // 2))
