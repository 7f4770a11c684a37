"""Prediction for the tasks whose models find boxes (detect, pose): images, folders, globs, video files and
cameras, with annotated output and JSON/TXT.

Each frame (data/stream.py) is letterboxed (to multiples of 32, not a square, except for SSD),
detected, its boxes mapped back to the frame, drawn and written; results go to predictions.json (COCO
results format, with file and frame), optionally YOLO txt and one image per detected object.
`classes=` and `agnostic_nms=` act on each frame's detections after the model's own post-processing.
"""

import cv2
import numpy as np
import torch

from ..data.stream import frame_stem
from ..engine.contract import Placement, Predictor
from ..engine.results import Boxes
from ..engine.tracking import track_id
from ..errors import FovealError
from ..files import write_bytes, write_text
from ..ops.boxes import nms, unletterbox_boxes
from ..ops.letterbox import letterbox
from ..report import counted
from ..report.draw import draw_boxes
from .boxes import NothingFound


def yolo_lines(det: dict, height: int, width: int, save_conf: bool = False, kpt_conf: float = 0.5) -> str:
    """Label-file lines `class cx cy w h` normalised to [0, 1], which YOLO readers (foveal's, Ultralytics')
    read back, with a pose model's joints after them as `x y v` (YOLO-pose's kpt_shape [K, 3]: v 2 for a joint
    scored at least kpt_conf, else 0 at 0 0); save_conf adds the score as the last field, as Ultralytics' does."""
    lines = []
    for k, ((x1, y1, x2, y2), score, label) in enumerate(zip(det["boxes"], det["scores"], det["labels"])):
        joints = "".join(f" {x / width:.6f} {y / height:.6f} 2" if s >= kpt_conf else " 0 0 0"
                         for x, y, s in det["keypoints"][k]) if "keypoints" in det else ""
        lines.append(f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}{joints}" + (f" {score:.5f}" if save_conf else ""))
    return "\n".join(lines) + ("\n" if lines else "")


def class_ids(text: str, classes: list[str]) -> np.ndarray | None:
    """The class indices a `classes=` comma list names (indices or names), or None for an empty list (all).
    Brackets and quotes are dropped: a YAML or Python list [0, 2] arrives here as the text "[0, 2]"."""
    ids, entries = [], [part.strip(" '\"") for part in text.strip().strip("[]").split(",")]
    for entry in filter(None, entries):
        if entry in classes:
            ids.append(classes.index(entry))
        elif entry.isdigit() and int(entry) < len(classes):
            ids.append(int(entry))
        else:
            raise FovealError(f"classes: {entry!r} is not a class of these weights "
                              f"(0..{len(classes) - 1}: {', '.join(classes)})")
    return np.array(ids, np.int64) if ids else None


def subset(det: dict, keep) -> dict:
    return {key: value[keep] for key, value in det.items()}


def save_crops(pixels: np.ndarray, det: dict, classes: list[str], folder, stem: str):
    """Each detected box of the RGB frame as folder/<class>/<stem>_<k>.jpg, k its rank in the frame's detections."""
    height, width = pixels.shape[:2]
    for k, (box, label) in enumerate(zip(det["boxes"], det["labels"])):
        x1, y1 = (min(int(v), limit - 1) for v, limit in zip(box[:2], (width, height)))  # at least one pixel
        x2, y2 = (max(int(np.ceil(v)), start + 1) for v, start in zip(box[2:], (x1, y1)))
        (folder / classes[int(label)]).mkdir(parents=True, exist_ok=True)
        crop = cv2.cvtColor(pixels[y1:y2, x1:x2], cv2.COLOR_RGB2BGR)
        write_bytes(folder / classes[int(label)] / f"{stem}_{k}.jpg", cv2.imencode(".jpg", crop)[1].tobytes())


class BoxPredictor(Predictor):
    """Boxes of each image or frame: drawn, in predictions.json (COCO results with file and frame), and
    with save_txt=true as YOLO label files. A task whose objects carry more (pose's keypoints) adds them
    through objects(), entry(), label_lines() and draw()."""

    # foveal's YOLO runs its network and its NMS apart, so that they are timed apart; a model whose objects
    # carry more than boxes gathers them by NMS's indices in its own forward (a predictor for it says False)
    times_nms_apart = True

    def __init__(self, task, model, device):
        super().__init__(task, model, device)
        self.frame_ids = {}
        self.class_ids = class_ids(self.cfg.classes, self.classes)
        self.stride = task.rect_stride(self.meta["model"], self.meta)
        # an end2end YOLO's forward_raw is its one-to-one head and its postprocess the top max_det pairs, no NMS
        self.split = self.times_nms_apart and hasattr(model, "forward_raw") and getattr(model, "exported", None) is None
        self.nothing_found = NothingFound()

    def prepare(self, pixels):
        boxed, scale, pad = letterbox(pixels, self.imgsz, self.stride)
        x = torch.from_numpy(boxed).to(self.device).permute(2, 0, 1)[None].float().div_(255)
        return x.contiguous(memory_format=torch.channels_last), Placement(*pixels.shape[:2], scale, scale, pad)

    @torch.inference_mode()
    def infer(self, pixels):
        """Detections of one (H, W, 3) RGB frame in its own pixel coordinates (numpy arrays)."""
        cfg, model = self.cfg, self.model
        with self.phase("preprocess"):
            x, placement = self.prepare(pixels)
            scale, pad = placement.scale_x, placement.pad
        with self.phase("inference"):
            if self.split:
                cls_logits, _, boxes, _, _ = model.decode(model.forward_raw(x))
            else:
                out = model(x)[0]
        with self.phase("postprocess"):
            if self.split:
                out = model.postprocess(cls_logits.sigmoid(), boxes, x.shape[-2:])[0]
            det = self.objects(out, scale, pad, *pixels.shape[:2])
            if self.class_ids is not None:  # after the model's max_det cut (Ultralytics' is before; rarely matters)
                det = subset(det, np.isin(det["labels"], self.class_ids))
            if cfg.agnostic_nms:  # the model's NMS is per class: this drops boxes of other classes on the same object
                keep = nms(torch.from_numpy(det["boxes"]).float(), torch.from_numpy(det["scores"]).float(), None,
                           cfg.iou, cfg.max_det)
                det = subset(det, keep.numpy())
        return det

    def objects(self, out: dict, scale: float, pad, height: int, width: int) -> dict:
        """The model's detections of a frame (letterboxed by scale and pad) in the frame's own pixels, numpy."""
        boxes = unletterbox_boxes(out["boxes"], scale, pad, height, width)
        return {"boxes": boxes.cpu().numpy(), "scores": out["scores"].float().cpu().numpy(),
                "labels": out["labels"].cpu().numpy()}

    def label_lines(self, det: dict, height: int, width: int) -> str:
        """save_txt's label file of a frame."""
        return yolo_lines(det, height, width, self.cfg.save_conf)

    def entry(self, det: dict, k: int) -> dict:
        """What predictions.json says of object k beyond its box, score and class."""
        return {}

    def annotate(self, frame, det):
        cfg, classes = self.cfg, self.classes
        image_id = self.frame_ids.setdefault((frame.name, frame.index), len(self.frame_ids))  # 0, 1, ... in frame order
        for k, (box, score, label) in enumerate(zip(det["boxes"], det["scores"], det["labels"])):
            x1, y1, x2, y2 = (float(v) for v in box)
            self.results.append({"image_id": image_id, "file_name": frame.name, "frame": frame.index,
                                 "category_id": int(label), "category": classes[int(label)],
                                 "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                                 "score": round(float(score), 5), **self.entry(det, k), **track_id(det, k)})
        if cfg.save_crop:
            save_crops(frame.pixels, det, classes, self.run_dir / "crops", frame_stem(frame))
        if cfg.save_txt:
            (self.run_dir / "labels").mkdir(exist_ok=True)
            write_text(self.run_dir / "labels" / f"{frame_stem(frame)}.txt",
                       self.label_lines(det, *frame.pixels.shape[:2]))
        drawn = self.draw(frame, det) if cfg.save else None
        self.nothing_found.keep(frame.pixels, len(det["labels"]))
        return drawn, counted(len(det["labels"]), "detection")

    def draw(self, frame, det):
        cfg = self.cfg
        return draw_boxes(frame.pixels, det["boxes"], det["labels"], self.classes,
                          None if cfg.hide_conf else det["scores"], line_width=cfg.line_width,
                          captions=not cfg.hide_labels, ids=det.get("track_ids"))

    def fields(self, frame, det):
        return {"boxes": Boxes.of(det)}

    def finish(self):
        return counted(len(self.results), "detection") + self.nothing_found.hint(self)
