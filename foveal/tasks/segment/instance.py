"""Instance segmentation (Mask R-CNN, yolo_*-seg): detection with a mask per object, scored by COCO box and mask AP.

It is detection plus masks, so it shares BoxTask with detection for everything but the data, the
augmentation (masks move with the pixels and boxes are recomputed from them) and the evaluation.
"""

from dataclasses import replace

import numpy as np

from ...data.detection import instance_masks
from ...data.segment_dataset import InstanceDataset
from ...files import write_json
from ...ops.letterbox import unletterbox_masks
from ..boxes import BoxEvaluator, BoxTask, no_detections
from .common import EMBEDDED, SegmentConfig, default_imgsz, load_segment_data, model_kwargs


class InstanceSegmentTask(BoxTask):
    name = "segment"
    Config = SegmentConfig
    fitness = "mask_map"
    epoch_columns = ("map", "mask_map50", "mask_map")
    curve_groups = [("loss", []), ("AP", ["mask_map", "mask_map50", "map"]), ("learning rate", ["lr"])]
    embedded = EMBEDDED

    def setup(self):
        cfg = self.cfg
        model_kwargs(cfg)  # refuse the U-Nets' width/depth before reading any data
        self.use_data(load_segment_data(cfg, "instance"))
        self.imgsz = default_imgsz(cfg)

    def dataset(self, split: str, train: bool):
        cfg = self.cfg
        return InstanceDataset(self.split_items(split), self.imgsz, cfg.augment() if train else None,
                               mosaic_epochs=cfg.epochs - cfg.close_mosaic)

    def weights_meta(self) -> dict:
        return {**super().weights_meta(), "kind": "instance"}

    def predictor(self, model, device):
        from .predict import InstancePredictor

        return InstancePredictor(self, model, device)

    def new_evaluator(self):
        return InstanceEvaluator(self.data.splits[self.eval_split], self.classes, self.cfg.threshold)

    def per_class_table(self, result):
        from .report import instance_table

        return instance_table(result, self.classes, self.data.splits[self.eval_split])

    def write_report(self, run_dir, history, result, model):
        from .report import write_instance_report

        items = self.data.splits[self.eval_split]
        write_instance_report(run_dir, f"segment {self.cfg.model} on {self.cfg.data}", history, result, self.classes,
                              items)
        if self.cfg.save_json:
            from ...metrics.detection import coco_results

            write_json(run_dir / "predictions.json", coco_results(items, result.details["detections"], self.classes,
                                                                  self.data.category_ids))


class InstanceEvaluator(BoxEvaluator):
    """BoxEvaluator's boxes plus each detection's mask on the original image; COCO bbox and segm AP."""

    def __init__(self, items, classes, threshold: float):
        super().__init__(items, classes)
        self.threshold = threshold

    def update(self, outputs, batch):
        super().update(outputs, batch)
        for output, target in zip(outputs, batch[1]):
            item = self.items[target["index"]]
            masks = unletterbox_masks(output["masks"], target["scale"], target["pad"].tolist(), item.height,
                                      item.width, self.threshold)
            self.detections[target["index"]]["masks"] = masks.cpu().numpy()

    def compute(self):
        from ...metrics.detection import coco_evaluate

        result = super().compute()
        detections = [det if det is not None else no_detections(masks=np.zeros((0, item.height, item.width), bool))
                      for item, det in zip(self.items, self.detections)]
        with_masks = [item if item.masks is not None else replace(item, masks=instance_masks(item))
                      for item in self.items]
        segm = coco_evaluate(with_masks, detections, self.classes, iou_type="segm")
        result.metrics.update({f"mask_{k}": v for k, v in segm.stats.items()})
        result.details.update({"segm": segm, "detections": detections})
        return result
