"""Pose: each object's box, class and K keypoints (joints), scored by COCO's OKS AP (and PCK on landmarks).

Pose data is detection data whose objects carry keypoints (foveal/data/detection.py), so the task is a
BoxTask: the same letterbox, augmentation (the joints move with the pixels, a flip swaps left and right by
the data's flip_idx), post-processing and tracking. Its models return keypoints (M, K, 3) per image beside
the boxes; the evaluator maps them back to each original image and runs COCOeval's keypoint evaluation.
Prediction is in predict.py (BoxPredictor plus the joints), the report in report.py.
"""

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch

from ...config import TrainConfig, opt
from ...data.detection import DetectionData, KeypointLayout
from ...data.pose_dataset import PoseDataset
from ...errors import FovealError
from ...files import write_json
from ...ops.boxes import NMS_IOU
from ...ops.keypoints import default_sigmas, unletterbox_keypoints
from ...registry import get_model_entry
from ...track.config import TrackConfig
from ..boxes import AugmentConfig, BoxEvaluator, BoxOutputConfig, BoxTask, no_detections

EMBEDDED = ("stickmen",)
MODES = ("train", "val", "predict", "track", "info", "export", "benchmark", "features", "explain")


@dataclass
class PoseConfig(BoxOutputConfig, AugmentConfig, TrackConfig, TrainConfig):
    model: str = opt("yolo_n-pose", "architecture name (`foveal models pose` lists them)")
    imgsz: int = opt(0, "input size in pixels, a multiple of 32 (0: 256 for stickmen, 320 otherwise)")
    epochs: int = opt(30, "number of training epochs")
    batch: int = opt(16, "batch size (per process when run with torchrun)")
    lr: float = opt(4e-3, "initial learning rate")
    weight_decay: float = opt(0.05, "weight decay (not applied to biases and norm layers)")
    conf: float = opt(-1.0, "confidence threshold (-1: 0.001 for val, 0.25 for predict)", range="[0, 1] or -1")
    iou: float = opt(NMS_IOU, "IoU threshold of non-maximum suppression", range="[0, 1]")
    max_det: int = opt(100, "most objects kept per image", range="[1, inf)")
    kpt_sigmas: str = opt("", "OKS sigmas, one per joint, a comma list (empty: the data's, COCO's for its 17 "
                              "joints, else 1/K each)")
    kpt_conf: float = opt(0.5, "predict: a joint is drawn (and written by save_txt) when its score is at least this",
                          range="[0, 1]")


def load_pose(data: str, strict: bool, val_fraction: float) -> DetectionData:
    if not data:
        raise FovealError("data: name a data set: stickmen, a YOLO-pose data.yaml, coco:person_keypoints.json,"
                          "images/ or landmarks:images/,points.csv")
    from ...data.formats.pose import load_pose_data

    return load_pose_data(data, strict=strict, val_fraction=val_fraction)


def parse_sigmas(text: str, count: int) -> list[float] | None:
    """kpt_sigmas= as K positive numbers, or None when empty."""
    if not text.strip():
        return None
    try:
        sigmas = [float(part) for part in text.strip().strip("[]").split(",")]
    except ValueError:
        raise FovealError(f"kpt_sigmas: expected a comma list of numbers, got '{text}'") from None
    if len(sigmas) != count or min(sigmas) <= 0:
        raise FovealError(f"kpt_sigmas: expected {count} positive numbers (one per joint), got {len(sigmas)}: '{text}'")
    return sigmas


class PoseTask(BoxTask):
    name = "pose"
    Config = PoseConfig
    fitness = "map"
    epoch_columns = ("box_map", "map50", "map", "pck", "nme")  # pck, nme: shown where computed (landmarks)
    curve_groups = [("loss", []), ("OKS AP", ["map", "map50", "map75"]), ("PCK@0.2 and NME", ["pck", "nme"]),
                    ("learning rate", ["lr"])]
    embedded = EMBEDDED

    def setup(self):
        cfg = self.cfg
        get_model_entry(cfg.model, "pose")
        self.imgsz = cfg.imgsz or (256 if cfg.data == "stickmen" else 320)
        self.check_imgsz(self.imgsz)
        data = load_pose(cfg.data, cfg.strict, cfg.val_fraction)
        if data.keypoints is None:
            raise FovealError(f"data={cfg.data}: has no keypoints (boxes only); pose needs each object's joints")
        self.use_data(data)
        if self.meta:  # trained weights: their joints, which the data must have too
            self.layout = KeypointLayout.from_dict(self.meta["keypoints"])
            if data.keypoints.count != self.layout.count:
                raise FovealError(f"data: its objects have {data.keypoints.count} keypoints, the weights' "
                                  f"{self.layout.count}")
        else:
            self.layout = data.keypoints
        given = parse_sigmas(cfg.kpt_sigmas, self.layout.count)
        self.sigmas = given or self.layout.sigmas or list(default_sigmas(self.layout.count))
        if cfg.hflip and self.layout.flip_idx is None and all(name.isdigit() for name in self.layout.names):
            warnings.warn("hflip: set to 0: the data names no joints and gives no flip_idx, so which joint mirrors "
                          "which is unknown (a flip would teach left as right); give flip_idx in data.yaml")
            cfg.hflip = 0.0

    def check_imgsz(self, imgsz: int):
        if imgsz % 32:
            raise FovealError(f"imgsz: must be a multiple of 32 for pose, got {imgsz}")

    def dataset(self, split: str, train: bool):
        cfg = self.cfg
        return PoseDataset(self.split_items(split), self.imgsz, cfg.augment() if train else None,
                           self.rect_stride(cfg.model, self.meta),
                           mosaic_epochs=cfg.epochs - cfg.close_mosaic, flip_idx=self.layout.flip_idx)

    def model_kwargs(self) -> dict:
        return {**super().model_kwargs(), "num_keypoints": self.layout.count, "sigmas": list(self.sigmas)}

    def weights_meta(self) -> dict:
        layout = replace(self.layout, sigmas=list(self.sigmas))  # the ones trained and scored with
        return {**super().weights_meta(), "keypoints": layout.to_dict()}

    def predictor(self, model, device):
        from .predict import PosePredictor

        return PosePredictor(self, model, device)

    @classmethod
    def model_for_info(cls, cfg):
        imgsz = cfg.imgsz or 320
        return cfg.model, {"num_classes": cfg.num_classes or 1, "num_keypoints": 17, "imgsz": imgsz}, imgsz

    def new_evaluator(self):
        return PoseEvaluator(self.data.splits[self.eval_split], self.classes, self.sigmas)

    def per_class_table(self, result):
        from .report import per_class_table

        return per_class_table(result, self.classes, self.data.splits[self.eval_split])

    def write_report(self, run_dir, history, result, model):
        from .report import write_pose_report

        items = self.data.splits[self.eval_split]
        write_pose_report(run_dir, f"pose {self.cfg.model} on {self.cfg.data}", history, result, self.classes, items,
                          self.layout)
        if self.cfg.save_json:
            from ...metrics.detection import coco_results

            write_json(run_dir / "predictions.json", coco_results(items, result.details["detections"], self.classes,
                                                                  self.data.category_ids))


class PoseEvaluator(BoxEvaluator):
    """BoxEvaluator's boxes plus each detection's joints on the original image; COCO box AP (box_*) and OKS
    AP (the task's own map, map50, ...), and PCK / NME where every image holds one object (landmarks)."""

    def __init__(self, items, classes, sigmas):
        super().__init__(items, classes)
        self.sigmas = sigmas

    def update(self, outputs, batch):
        super().update(outputs, batch)
        for output, target in zip(outputs, batch[1]):
            item = self.items[target["index"]]
            keypoints = unletterbox_keypoints(output["keypoints"], target["scale"], target["pad"].tolist(),
                                              item.height, item.width)
            self.detections[target["index"]]["keypoints"] = keypoints.cpu()

    def compute(self):
        from ...metrics.detection import coco_evaluate

        result = super().compute()
        detections = [d if d is not None else no_detections(keypoints=torch.zeros(0, len(self.sigmas), 3))
                      for d in self.detections]
        pose = coco_evaluate(self.items, detections, self.classes, iou_type="keypoints", kpt_sigmas=self.sigmas)
        metrics = {f"box_{k}": v for k, v in result.metrics.items()}
        metrics.update(pose.stats)
        if self.items and all(len(item.labels) == 1 for item in self.items):
            metrics.update(landmark_scores(self.items, detections))
        return type(result)(metrics, {**result.details, "box": result.details["coco"], "coco": pose,
                                      "detections": detections})


def landmark_scores(items, detections) -> dict:
    """PCK@0.2 (of the box's longer side) and NME of the best-scored detection's joints, one object per image."""
    from ...metrics.keypoints import landmark_metrics

    count = items[0].keypoints.shape[1]
    truth = np.stack([item.keypoints[0] for item in items])
    boxes = np.stack([item.boxes[0] for item in items])
    best = [d["keypoints"][int(d["scores"].argmax())].numpy() if len(d["scores"]) else np.zeros((count, 3), np.float32)
            for d in detections]
    scores = landmark_metrics(truth, np.stack(best), boxes)
    return {"pck": scores.pck, "nme": scores.nme}
