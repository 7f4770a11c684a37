"""What the tasks whose models find boxes share (detect, and segment's instance models such as Mask R-CNN).

Their models follow one contract (uint8 images scaled to [0, 1] in; a loss dict in training; a list of
{boxes, scores, labels} in eval, post-processed with the model's conf, iou and max_det), and their
evaluators map each image's boxes back from the letterboxed frame before COCO evaluation.
"""

import copy

import torch

from ..data.detect_dataset import collate
from ..engine.transfer import prefixes_outside_backbone
from ..ops.boxes import unletterbox_boxes
from ..registry import create_model
from .base import EvalResult, Evaluator, Task


class BoxTask(Task):
    """A Task for detectors; subclasses supply the data, the datasets, the evaluator and the report."""

    def collate(self, samples):
        return collate(samples)

    def build_model(self):
        return create_model(self.cfg.model, self.name, **self.model_kwargs(), **self.inference_options("val"))

    def inference_options(self, mode: str) -> dict:
        conf = self.cfg.conf if self.cfg.conf >= 0 else (0.25 if mode == "predict" else 0.001)
        return {"conf": conf, "iou": self.cfg.iou, "max_det": self.cfg.max_det}

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


class BoxEvaluator(Evaluator):
    """Collects detections mapped back to each original image, then runs COCO evaluation."""

    def __init__(self, items, classes):
        self.items, self.classes = items, classes
        self.detections = [None] * len(items)

    def update(self, outputs, batch):
        for output, target in zip(outputs, batch[1]):
            item = self.items[target["index"]]
            boxes = unletterbox_boxes(output["boxes"], target["scale"], target["pad"].tolist(), item.width, item.height)
            self.detections[target["index"]] = {"boxes": boxes.cpu(), "scores": output["scores"].float().cpu(),
                                                "labels": output["labels"].cpu()}

    def compute(self) -> EvalResult:
        from ..metrics.detection import coco_evaluate, detection_confusion_matrix

        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
        detections = [d if d is not None else empty for d in self.detections]
        result = coco_evaluate(self.items, detections, self.classes)
        confusion = detection_confusion_matrix(self.items, detections, len(self.classes))
        return EvalResult(dict(result.stats), {"coco": result, "detections": detections, "confusion": confusion})
