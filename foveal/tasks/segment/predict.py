"""Segmentation on images, folders, globs, video files and cameras: overlays, index masks, polygons.

Semantic models write for each image an overlay, a palette PNG whose pixel values are the class
indices (viewable in colour, readable as data), and the outline polygons of every class region;
instance models write overlays with outlines, boxes and scores, and one polygon list per object.
Images larger than 1.5 x the training size are segmented by sliding windows at their own
resolution (tile=auto), since shrinking them would erase small structures the model learned at scale.
"""

from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from ...data.stream import frame_stem
from ...engine.contract import Placement, Predictor
from ...engine.results import Boxes
from ...engine.tracking import track_id
from ...files import atomic_write
from ...ops.boxes import unletterbox_boxes
from ...ops.letterbox import letterbox, unletterbox_logits, unletterbox_masks
from ...ops.windows import window_starts
from ...report.draw import class_colour, draw_instances, overlay_classes
from ...report import counted
from ..boxes import NothingFound
from .common import logits_to_labels, normalised

WINDOW_BATCH = 8  # sliding windows run through the model together


def mask_polygons(mask: np.ndarray, min_area: float = 2.0) -> list[list[float]]:
    """Outer outlines of the regions of an (H, W) bool mask as flat [x1, y1, x2, y2, ...] pixel lists
    (holes are not subtracted), each with at least 3 points and `min_area` pixels."""
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.reshape(-1).astype(float).tolist() for c in contours
            if len(c) >= 3 and cv2.contourArea(c) >= min_area]


def letterboxed_input(frame: np.ndarray, imgsz: int, device, prepare) -> tuple[torch.Tensor, Placement]:
    """(1, 3, imgsz, imgsz) model input of an (H, W, 3) RGB frame letterboxed to imgsz, made by `prepare`
    (uint8 batch -> model input), and where the frame lies in it."""
    boxed, scale, pad = letterbox(frame, imgsz)
    x = prepare(torch.from_numpy(boxed).to(device).permute(2, 0, 1)[None])
    return x, Placement(*frame.shape[:2], scale, scale, pad)


def unit_channels_last(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float in [0, 1], channels_last: the input of instance models."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


@torch.inference_mode()
def semantic_logits(model, frame: np.ndarray, imgsz: int, device, tile: bool, overlap: float) -> torch.Tensor:
    """(C, H, W) logits of one (H, W, 3) RGB frame at its own size: one letterboxed pass, or sliding
    windows of imgsz pixels whose logits are averaged where they overlap."""
    height, width = frame.shape[:2]
    if not tile:
        x, placement = letterboxed_input(frame, imgsz, device, normalised)
        return unletterbox_logits(model(x)[0], placement.scale_x, placement.pad, height, width).float()
    padded = np.pad(frame, ((0, max(0, imgsz - height)), (0, max(0, imgsz - width)), (0, 0)), mode="reflect")
    image = torch.from_numpy(padded).to(device).permute(2, 0, 1)
    stride = max(1, int(imgsz * (1 - overlap)))
    corners = [(y, x) for y in window_starts(image.shape[1], imgsz, stride)
               for x in window_starts(image.shape[2], imgsz, stride)]
    total, hits = None, torch.zeros(image.shape[1:], device=device)
    for start in range(0, len(corners), WINDOW_BATCH):
        chunk = corners[start:start + WINDOW_BATCH]
        batch = torch.stack([image[:, y:y + imgsz, x:x + imgsz] for y, x in chunk])
        logits = model(normalised(batch)).float()
        if total is None:
            total = torch.zeros((logits.shape[1], *image.shape[1:]), device=device)
        for (y, x), window in zip(chunk, logits):
            total[:, y:y + imgsz, x:x + imgsz] += window
            hits[y:y + imgsz, x:x + imgsz] += 1
    return (total / hits)[:, :height, :width]


def palette_png(labels: np.ndarray, path: Path):
    """Save (H, W) uint8 class indices as a palette PNG: values are the classes, colours as the overlays."""
    image = Image.fromarray(labels, mode="P")
    palette = [0, 0, 0] + [v for k in range(1, 256) for v in class_colour(k)]
    image.putpalette(palette)
    atomic_write(path, lambda tmp: image.save(tmp, format="PNG"))


class SemanticPredictor(Predictor):
    """Per frame: an overlay, a palette PNG of class indices, and the pixel count and outline polygons of
    each class (predictions.json)."""

    def prepare(self, pixels):  # the one letterboxed pass (explain does not tile)
        return letterboxed_input(pixels, self.imgsz, self.device, normalised)

    def infer(self, pixels):
        cfg = self.cfg
        tile = cfg.tile == "true" or (cfg.tile == "auto" and max(pixels.shape[:2]) > 1.5 * self.imgsz)
        logits = semantic_logits(self.model, pixels, self.imgsz, self.device, tile, cfg.overlap)
        labels = logits_to_labels(logits[None], self.meta.get("sigmoid", False), cfg.threshold)[0]
        return labels.to(torch.uint8).cpu().numpy()

    def annotate(self, frame, labels):
        cfg, classes = self.cfg, self.classes
        values, counts = np.unique(labels, return_counts=True)
        pixels = {classes[k]: int(n) for k, n in zip(values.tolist(), counts) if k < len(classes)}
        self.results.append({"file_name": frame.name, "frame": frame.index, "pixels": pixels,
                             "polygons": {classes[k]: mask_polygons(labels == k) for k in values.tolist()
                                          if 0 < k < len(classes)}})
        if cfg.save and frame.index is None:
            (self.run_dir / "masks").mkdir(exist_ok=True)
            palette_png(labels, self.run_dir / "masks" / f"{frame_stem(frame)}.png")
        drawn = self.draw(frame, labels) if cfg.save else None
        return drawn, ", ".join(f"{c} {n / labels.size:.1%}" for c, n in pixels.items() if c != classes[0]) or \
            f"{classes[0]} only"

    def draw(self, frame, labels):
        return overlay_classes(frame.pixels, labels, self.cfg.alpha)

    def fields(self, frame, labels):
        return {"mask": labels}

    def finish(self):
        return f"{len(self.results)} segmented"


class InstancePredictor(Predictor):
    """Per object: box, score, class, mask area and outline polygons (predictions.json); overlays drawn."""

    def __init__(self, task, model, device):
        super().__init__(task, model, device)
        self.nothing_found = NothingFound()

    def prepare(self, pixels):
        return letterboxed_input(pixels, self.imgsz, self.device, unit_channels_last)

    @torch.inference_mode()
    def infer(self, pixels):
        """Detections with (K, H, W) bool masks of one RGB frame, in its own pixel coordinates (numpy)."""
        with self.phase("preprocess"):
            x, placement = self.prepare(pixels)
        with self.phase("inference"):
            out = self.model(x)[0]  # yolo-seg assembles its masks in here, Mask R-CNN pastes them
        with self.phase("postprocess"):
            height, width, scale, pad = *pixels.shape[:2], placement.scale_x, placement.pad
            boxes = unletterbox_boxes(out["boxes"], scale, pad, height, width).cpu().numpy()
            masks = unletterbox_masks(out["masks"], scale, pad, height, width, self.cfg.threshold).cpu().numpy()
            return {"boxes": boxes, "scores": out["scores"].float().cpu().numpy(),
                    "labels": out["labels"].cpu().numpy(), "masks": masks}

    def annotate(self, frame, det):
        classes = self.classes
        for k, (box, score, label, mask) in enumerate(zip(det["boxes"], det["scores"], det["labels"], det["masks"])):
            x1, y1, x2, y2 = (round(float(v), 2) for v in box)
            self.results.append({"file_name": frame.name, "frame": frame.index, "category_id": int(label),
                                 "category": classes[int(label)], "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
                                 "score": round(float(score), 5), "segmentation": mask_polygons(mask),
                                 "area": int(mask.sum()), **track_id(det, k)})
        drawn = self.draw(frame, det) if self.cfg.save else None
        self.nothing_found.keep(frame.pixels, len(det["labels"]))
        return drawn, counted(len(det["labels"]), "object")

    def draw(self, frame, det):
        return draw_instances(frame.pixels, det["masks"], det["boxes"], det["labels"], self.classes, det["scores"],
                              line_width=self.cfg.line_width, ids=det.get("track_ids"))

    def fields(self, frame, det):
        return {"boxes": Boxes.of(det), "masks": det["masks"]}

    def finish(self):
        return counted(len(self.results), "object") + self.nothing_found.hint(self)
