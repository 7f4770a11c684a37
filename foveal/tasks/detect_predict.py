"""Detection on images, folders, globs, video files and cameras, with annotated output and JSON/TXT.

Each frame (data/stream.py) is letterboxed, detected, its boxes mapped back to the frame, drawn
and written; results go to predictions.json (COCO results format) and optionally YOLO txt.
"""

import numpy as np
import torch

from ..data.detect_transforms import letterbox
from ..data.stream import frame_stem
from ..files import write_text
from ..report.draw import draw_boxes
from .base import Predictor


@torch.inference_mode()
def detect_frame(model, frame: np.ndarray, imgsz: int, device) -> dict:
    """Detections of one (H, W, 3) RGB frame in its own pixel coordinates (numpy arrays)."""
    boxed, scale, (pad_x, pad_y) = letterbox(frame, imgsz)
    x = torch.from_numpy(boxed).to(device).permute(2, 0, 1)[None].float().div_(255)
    out = model(x.contiguous(memory_format=torch.channels_last))[0]
    boxes = (out["boxes"].float().cpu().numpy() - [pad_x, pad_y, pad_x, pad_y]) / scale
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, frame.shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, frame.shape[0])
    return {"boxes": boxes, "scores": out["scores"].float().cpu().numpy(), "labels": out["labels"].cpu().numpy()}


def yolo_lines(det: dict, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), score, label in zip(det["boxes"], det["scores"], det["labels"]):
        lines.append(f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {score:.5f}")
    return "\n".join(lines) + ("\n" if lines else "")


class DetectPredictor(Predictor):
    """Boxes of each image or frame: drawn, in predictions.json (COCO results with file and frame), and
    with save_txt=true as YOLO label files."""

    def __init__(self, *args):
        super().__init__(*args)
        self.model.to(memory_format=torch.channels_last)
        self.frame_ids = {}

    def infer(self, pixels):
        return detect_frame(self.model, pixels, self.imgsz, self.device)

    def annotate(self, frame, det):
        cfg, classes = self.cfg, self.classes
        image_id = self.frame_ids.setdefault((frame.name, frame.index), len(self.frame_ids))  # 0, 1, ... in frame order
        for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.results.append({"image_id": image_id, "file_name": frame.name, "frame": frame.index,
                                 "category_id": int(label), "category": classes[int(label)],
                                 "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                 "score": round(float(score), 5)})
        if cfg.save_txt:
            (self.run_dir / "labels").mkdir(exist_ok=True)
            write_text(self.run_dir / "labels" / f"{frame_stem(frame)}.txt",
                       yolo_lines(det, frame.pixels.shape[1], frame.pixels.shape[0]))
        drawn = draw_boxes(frame.pixels, det["boxes"], det["labels"], classes, det["scores"],
                           line_width=cfg.line_width) if cfg.save else None
        return drawn, f"{len(det['labels'])} detections"

    def finish(self):
        return f"{len(self.results)} detections"
