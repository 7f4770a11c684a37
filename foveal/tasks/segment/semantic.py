"""Semantic segmentation: the task of `foveal segment` (data, loss and metrics of semantic models).

One `foveal segment` command serves two kinds of model: semantic ones (U-Net, DeepLab, ...) label
every pixel with a class and are scored by mIoU and Dice here; instance ones (Mask R-CNN, yolo_*-seg) find
objects with a mask each and are scored by COCO box and mask AP (instance.py).
SegmentTask.create picks by the model's registered kind. What both share (config, data) is in
common.py, prediction in predict.py, the report in report.py.
"""

from dataclasses import replace

import torch

from ...data.segment_dataset import SemanticDataset, semantic_collate
from ...data.segmentation import IGNORE_INDEX, read_labels
from ...engine.contract import EvalResult, Evaluator, Task
from ...engine.transfer import prefixes_outside_backbone
from ...errors import FovealError
from ...ops.letterbox import unletterbox_logits
from ...registry import create_model
from .common import (EMBEDDED, MEAN, STD, SegmentConfig, default_imgsz, load_segment_data, logits_to_labels, model_kind,
                     model_kwargs, normalised)

MODES = ("train", "val", "predict", "track", "info", "export", "benchmark", "features", "explain")


class SegmentTask(Task):
    name = "segment"
    Config = SegmentConfig
    fitness = "miou"
    epoch_columns = ("miou", "dice")
    curve_groups = [("loss", []), ("mIoU / Dice", ["miou", "dice", "dice_fg"]), ("learning rate", ["lr"])]
    embedded = EMBEDDED

    @classmethod
    def create(cls, cfg):
        if model_kind(cfg.model) == "instance":
            from .instance import InstanceSegmentTask

            return InstanceSegmentTask(cfg)
        return cls(cfg)

    @classmethod
    def trained_config(cls, cfg, meta):
        """Also how the masks were read, the head, and the U-Nets' width and depth."""
        return replace(super().trained_config(cfg, meta), binary_masks=meta.get("binary_masks", cfg.binary_masks),
                       head="sigmoid" if meta.get("sigmoid") else "softmax",
                       **{k: v for k, v in meta["model_kwargs"].items() if k in ("width", "depth")})

    def setup(self):
        cfg = self.cfg
        model_kwargs(cfg)  # refuse width/depth on a library model before reading any data
        for key in ("mosaic", "save_json"):  # instance models' keys
            if getattr(cfg, key):
                raise FovealError(f"{key}: not for {cfg.model}, a semantic model (instance models only); leave "
                                  f"{key}= out")
        self.use_data(load_segment_data(cfg, "semantic"))
        if len(self.data.classes) < 2:
            raise FovealError(f"data: segmentation needs at least 2 classes (e.g. background and object), "
                              f"got {self.data.classes}")
        self.imgsz = default_imgsz(cfg)
        self.sigmoid = cfg.head == "sigmoid" or (cfg.head == "auto" and len(self.data.classes) == 2)
        if self.sigmoid and len(self.data.classes) != 2:
            raise FovealError(f"head=sigmoid needs 2 classes (background and object), the data has {len(self.classes)}")
        self.class_weights = self._class_weights(cfg.class_weights)

    def dataset(self, split: str, train: bool):
        return SemanticDataset(self.split_items(split), len(self.classes), self.imgsz,
                               self.cfg.augment() if train else None, self.cfg.binary_masks)

    def collate(self, samples):
        return semantic_collate(samples)

    def build_model(self):
        return create_model(self.cfg.model, self.name, **self.model_kwargs())

    def model_kwargs(self) -> dict:
        return {"num_classes": 1 if self.sigmoid else len(self.classes), **model_kwargs(self.cfg)}

    def head(self, model):
        return prefixes_outside_backbone(model)

    def weights_meta(self) -> dict:
        return {**super().weights_meta(), "kind": "semantic", "sigmoid": self.sigmoid, "mean": MEAN, "std": STD,
                "binary_masks": self.cfg.binary_masks}

    def predictor(self, model, device):
        from .predict import SemanticPredictor

        return SemanticPredictor(self, model, device)

    def explain_target(self, model, image, inside, target, classes):
        from ...inspect.targets import segmentation_target

        return segmentation_target(model, image, target, classes, self.cfg.threshold, inside)

    @classmethod
    def model_for_info(cls, cfg):
        imgsz = cfg.imgsz or 256
        kwargs = {"num_classes": cfg.num_classes or 21, **model_kwargs(cfg)}
        if model_kind(cfg.model) == "instance":
            kwargs["imgsz"] = imgsz
        return cfg.model, kwargs, imgsz

    def _class_weights(self, spec: str):
        if not spec:
            return None
        if spec == "balanced":
            from ...losses.segmentation import balanced_class_weights

            counts = torch.zeros(len(self.classes), dtype=torch.long)
            for item in self.data.splits["train"]:
                labels = torch.from_numpy(read_labels(item, len(self.classes), self.cfg.binary_masks))
                counts += torch.bincount(labels[labels != IGNORE_INDEX].long(), minlength=len(self.classes))
            return balanced_class_weights(counts)
        try:
            weights = [float(w) for w in spec.split(",")]
        except ValueError:
            raise FovealError(f"class_weights: expected 'balanced' or numbers separated by commas, got '{spec}'") from None
        if len(weights) != len(self.classes):
            raise FovealError(f"class_weights: {len(weights)} weights for {len(self.classes)} classes")
        return torch.tensor(weights)

    prepare = staticmethod(normalised)  # uint8 (B, 3, H, W) -> the model input

    def loss(self, model, batch):
        from ...losses.segmentation import segmentation_loss

        images, masks, _ = batch
        cfg = self.cfg
        total, parts = segmentation_loss(model(self.prepare(images)), masks, cfg.ce_weight, cfg.dice_weight,
                                         cfg.focal_gamma, self.class_weights)
        return total, {"loss": total.item(), **{k: v.item() for k, v in parts.items()}}

    def forward_eval(self, model, batch):
        return model(self.prepare(batch[0]))

    def new_evaluator(self):
        return SemanticEvaluator(self.data.splits[self.eval_split], self.classes, self.sigmoid, self.cfg.threshold,
                                 self.cfg.binary_masks)

    def per_class_table(self, result):
        from .report import semantic_table

        return semantic_table(result, self.classes)

    def write_report(self, run_dir, history, result, model):
        from .report import write_semantic_report

        write_semantic_report(run_dir, f"segment {self.cfg.model} on {self.cfg.data}", history, result,
                              self.classes, self.data.splits[self.eval_split], self.curve_groups, self.cfg.binary_masks)


class SemanticEvaluator(Evaluator):
    """One confusion matrix over every original-resolution pixel of the split (METRICS.md).

    Predictions are mapped back to each image's own size before scoring, so the numbers do not depend
    on imgsz; when the letterbox did not resize, the batch's mask is the original one and is not re-read.
    """

    def __init__(self, items, classes, sigmoid: bool, threshold: float, binary_masks: bool):
        from ...metrics.segmentation import SegmentationMeter

        self.items, self.classes, self.sigmoid, self.threshold = items, classes, sigmoid, threshold
        self.binary_masks = binary_masks
        self.meter = SegmentationMeter(len(classes), IGNORE_INDEX)
        self.samples = []  # (index, predicted (H, W) uint8) of the first images, for the report

    def update(self, outputs, batch):
        _, masks, metas = batch
        for logits, mask, meta in zip(outputs, masks, metas):
            item = self.items[meta["index"]]
            original = unletterbox_logits(logits, meta["scale"], meta["pad"], item.height, item.width)
            predicted = logits_to_labels(original[None], self.sigmoid, self.threshold)[0]
            nh, nw = round(item.height * meta["scale"]), round(item.width * meta["scale"])
            if (nh, nw) == (item.height, item.width):
                truth = mask[meta["pad"][1]:meta["pad"][1] + nh, meta["pad"][0]:meta["pad"][0] + nw]
            else:
                truth = torch.from_numpy(read_labels(item, len(self.classes), self.binary_masks)).to(predicted.device)
            self.meter.update(predicted, truth)
            if len(self.samples) < 12:
                self.samples.append((meta["index"], predicted.to(torch.uint8).cpu().numpy()))

    def compute(self) -> EvalResult:
        result = self.meter.compute(self.classes)
        return EvalResult(dict(result.metrics), {"semantic": result, "samples": self.samples})
