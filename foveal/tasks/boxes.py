"""What the tasks whose models find boxes share (detect, and segment's instance models such as Mask R-CNN).

Their models follow one contract (uint8 images scaled to [0, 1] in; a loss dict in training; a list of
{boxes, scores, labels} in eval, post-processed with the model's conf, iou and max_det), and their
evaluators map each image's boxes back from the letterboxed frame before COCO evaluation.
"""

import copy
from dataclasses import dataclass

import torch

from ..config import opt
from ..data.detect_dataset import Augment, collate
from ..engine.contract import EvalResult, Evaluator, Task
from ..engine.transfer import prefixes_outside_backbone
from ..ops.boxes import unletterbox_boxes
from ..registry import create_model, get_model_entry


@dataclass
class AugmentConfig:
    """The training augmentation keys of detect and pose; their defaults are data/detect_dataset.py Augment's
    (written there only)."""

    mosaic: float = opt(Augment.mosaic, "probability of a 4-image mosaic in training", range="[0, 1]")
    close_mosaic: int = opt(5, "turn mosaic off for the last N epochs", range="[0, inf)")
    scale: float = opt(Augment.scale, "random scale 1 +- scale", range="[0, 1)")
    translate: float = opt(Augment.translate, "random shift, fraction of the image size", range="[0, 1]")
    degrees: float = opt(Augment.degrees, "random rotation range in degrees", range="[0, 180]")
    hflip: float = opt(Augment.hflip, "horizontal flip probability (pose: left and right joints swap by the "
                                      "data's flip_idx; off for joints with neither names nor flip_idx)",
                       range="[0, 1]")
    hsv_h: float = opt(Augment.hsv_h, "hue jitter (fraction)", range="[0, 1]")
    hsv_s: float = opt(Augment.hsv_s, "saturation jitter (fraction)", range="[0, 1]")
    hsv_v: float = opt(Augment.hsv_v, "value (brightness) jitter (fraction)", range="[0, 1]")

    def augment(self) -> Augment:
        return Augment(self.mosaic, self.scale, self.translate, self.degrees, self.hflip, self.hsv_h, self.hsv_s,
                       self.hsv_v)


@dataclass
class BoxOutputConfig:
    """What detect's and pose's predict and val write and draw."""

    save: bool = opt(True, "predict: write annotated images or video")
    save_txt: bool = opt(False, "predict: also write YOLO txt labels (class cx cy w h, normalised; pose: then x y v "
                                "per joint); track: MOTChallenge lines, mot/<video>.txt")
    save_conf: bool = opt(False, "predict: add each object's confidence to its save_txt line (the last field)")
    classes: str = opt("", "predict: keep only these classes, a comma list of indices or names (e.g. 0,2)")
    agnostic_nms: bool = opt(False, "predict: non-maximum suppression across classes (one box per object)")
    hide_conf: bool = opt(False, "predict: leave the confidence out of the drawn captions")
    hide_labels: bool = opt(False, "predict: draw the boxes without captions (no class, no confidence)")
    line_width: int = opt(2, "predict: box (and limb) line width in pixels", range="[1, inf)")
    save_crop: bool = opt(False, "predict: also write each detected object as an image, crops/<class>/<name>.jpg")
    save_json: bool = opt(False, "val (and the end of train): also write predictions.json, COCO results (pose: "
                                 "keypoint results) with the data's own image and category ids, which pycocotools "
                                 "reads")


LOOK_AGAIN_FRAMES = 8  # predict found nothing: the first frames are run again at a low conf for a hint
LOW_CONF = 0.001  # val's


class NothingFound:
    """What a box Predictor needs to say, when a run found nothing at its conf, how close it came: the first
    frames are kept until something is found, and run again at LOW_CONF once, at the end, if nothing was."""

    def __init__(self):
        self.frames: list = []
        self.found_any = False

    def keep(self, pixels, found: int):
        self.found_any = self.found_any or found > 0
        if self.found_any:
            self.frames = []  # no hint to give: no 4K frames to hold on to
        elif len(self.frames) < LOOK_AGAIN_FRAMES:
            self.frames.append(pixels)

    def hint(self, predictor) -> str:
        """'' when something was found, or the best score the first frames reach at a low conf."""
        model, conf = predictor.model, getattr(predictor.model, "conf", None)
        if self.found_any or not self.frames or conf is None or conf <= LOW_CONF:
            return ""
        timed = dict(predictor.seconds)  # the look again is not predict's time per image
        model.conf = LOW_CONF
        try:
            scores = [float(det["scores"].max()) for det in map(predictor.infer, self.frames) if len(det["scores"])]
        finally:
            model.conf, predictor.seconds = conf, timed
        first = f"the first {len(self.frames)} {'frames' if len(self.frames) > 1 else 'frame'}"
        if not scores:
            return f"; nothing scored above {LOW_CONF:g} in {first} either"
        return f"; the best score in {first} was {max(scores):.3f} (below conf={conf:g}: lower conf= to see it)"


class BoxTask(Task):
    """A Task for detectors; subclasses supply the data, the datasets, the evaluator and the report."""

    def collate(self, samples):
        return collate(samples)

    def build_model(self):
        return create_model(self.cfg.model, self.name, **self.model_kwargs(), **self.inference_options("val"))

    finds_objects = True

    def inference_options(self, mode: str) -> dict:
        """conf= or, by default, 0.25 to predict, 0.001 to score (val), and in `track` the tracker's lowest
        threshold: its second stage continues tracks with the low-scoring detections."""
        defaults = {"predict": 0.25, "track": self.cfg.track_low_thresh}
        conf = self.cfg.conf if self.cfg.conf >= 0 else defaults.get(mode, 0.001)
        return {"conf": conf, "iou": self.cfg.iou, "max_det": self.cfg.max_det}

    def rect_stride(self, model: str, meta: dict | None = None) -> int:
        """Evaluation and prediction letterbox to multiples of 32 (not to a square), except for models
        that resize every input to their own fixed square (SSD) and graphs exported at one size."""
        fixed_graph = bool(meta and "onnx" in meta and not meta["onnx"]["dynamic"])
        return 0 if fixed_graph or get_model_entry(model, self.name).kind == "fixed_size" else 32

    def inference_model(self, model):
        return copy.deepcopy(model).fuse() if hasattr(model, "fuse") else model

    def head(self, model):
        return prefixes_outside_backbone(model)

    @staticmethod
    def prepare(images):
        return images.float().div_(255).contiguous(memory_format=torch.channels_last)

    def loss(self, model, batch):
        images, targets = batch
        losses = model(self.prepare(images), targets)
        total = sum(losses.values())
        return total, {"loss": total.item(), **{k: v.item() for k, v in losses.items()}}

    def forward_eval(self, model, batch):
        return model(self.prepare(batch[0]))

    def explain_target(self, model, image, inside, target, classes):  # a detection, also of Mask R-CNN
        from ..inspect.targets import detection_target

        return detection_target(model, image, target, classes)


def no_detections(**empty) -> dict:
    """The detections of an image the evaluator was given none for, with a task's `empty` per-object arrays."""
    return {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long), **empty}


class BoxEvaluator(Evaluator):
    """Collects detections mapped back to each original image, then runs COCO evaluation."""

    def __init__(self, items, classes):
        self.items, self.classes = items, classes
        self.detections = [None] * len(items)

    def update(self, outputs, batch):
        for output, target in zip(outputs, batch[1]):
            item = self.items[target["index"]]
            boxes = unletterbox_boxes(output["boxes"], target["scale"], target["pad"].tolist(), item.height, item.width)
            self.detections[target["index"]] = {"boxes": boxes.cpu(), "scores": output["scores"].float().cpu(),
                                                "labels": output["labels"].cpu()}

    def compute(self) -> EvalResult:
        from ..metrics.detection import coco_evaluate, detection_confusion_matrix

        detections = [d if d is not None else no_detections() for d in self.detections]
        result = coco_evaluate(self.items, detections, self.classes)
        confusion = detection_confusion_matrix(self.items, detections, len(self.classes))
        return EvalResult(dict(result.stats), {"coco": result, "detections": detections, "confusion": confusion})
