"""Drawing detections on images (for reports, and for annotated images and video from predict)."""

import colorsys

import cv2
import numpy as np


def class_colour(index: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class (golden-ratio hue steps)."""
    r, g, b = colorsys.hsv_to_rgb((index * 0.618034) % 1.0, 0.85, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_boxes(image: np.ndarray, boxes, labels, classes: list[str], scores=None, colour=None,
               line_width: int = 2) -> np.ndarray:
    """A copy of (H, W, 3) uint8 RGB `image` with xyxy boxes and 'class score' captions."""
    out = np.ascontiguousarray(image).copy()
    font_scale = max(0.35, line_width / 5)
    for i, (box, label) in enumerate(zip(np.asarray(boxes, np.float32), np.asarray(labels))):
        c = colour or class_colour(int(label))
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, line_width, cv2.LINE_AA)
        text = classes[int(label)] + (f" {float(scores[i]):.2f}" if scores is not None else "")
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
        top = y1 - th - base if y1 - th - base >= 0 else y1
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), c, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out
