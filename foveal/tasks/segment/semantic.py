"""Segmentation: config, data, loss and metrics of semantic models, and the val/predict/info modes.

One `foveal segment` command serves two kinds of model: semantic ones (U-Net, DeepLab, ...) label
every pixel with a class and are scored by mIoU and Dice here; instance ones (Mask R-CNN) find
objects with a mask each and are scored by COCO box and mask AP (segment_instance.py).
SegmentTask.create picks by the model's registered kind. Prediction is in segment_predict.py, the
report in segment_report.py.
"""

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F

from ...config import TrainConfig, opt
from ...data.polyps import polyps_segmentation_data
from ...data.segment_dataset import SegmentAugment, SemanticDataset, semantic_collate
from ...data.segmentation import IGNORE_INDEX, read_labels, shapes_segmentation_data
from ...engine.transfer import prefixes_outside_backbone
from ...errors import FovealError
from ...registry import create_model, get_model_entry
from ...engine.contract import EvalResult, Evaluator, Task

EMBEDDED = ("shapes", "polyps")
MODES = ("train", "val", "predict", "info", "export", "benchmark", "features", "explain")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, so pretrained encoders fit


@dataclass
class SegmentConfig(TrainConfig):
    model: str = opt("unet", "architecture name (`foveal models segment` lists them)")
    imgsz: int = opt(0, "input size in pixels, a multiple of 32 (0: 128 for shapes, 256 otherwise)")
    epochs: int = opt(20, "number of training epochs")
    batch: int = opt(8, "batch size (per process when run with torchrun)")
    lr: float = opt(1e-3, "initial learning rate")
    weight_decay: float = opt(1e-4, "weight decay (not applied to biases and norm layers)")
    classes: str = opt("", "class list file (one name per line, index = line; or YAML `names:`) for mask folders")
    binary_masks: bool = opt(False, "masks are black-and-white images (e.g. 0/255 JPEGs): over 127 is class 1")
    head: str = opt("auto", "softmax over all classes, or sigmoid for 2-class data (auto: sigmoid if 2 classes)",
                    ("auto", "softmax", "sigmoid"))
    ce_weight: float = opt(1.0, "weight of the cross-entropy (or focal) term; binary cross-entropy for sigmoid",
                           range="[0, inf)")
    dice_weight: float = opt(1.0, "weight of the soft Dice term (0: cross-entropy only)", range="[0, inf)")
    focal_gamma: float = opt(0.0, "focal loss gamma: > 0 replaces cross-entropy by focal loss", range="[0, inf)")
    class_weights: str = opt("", "cross-entropy class weights: 'balanced' (from train pixel counts) or a comma list")
    width: int = opt(0, "unet/resunet: channels of the first level, doubled per level (0: model default 32)",
                     range="[0, inf)")
    depth: int = opt(0, "unet/resunet: number of down-samplings (0: model default 4)", range="[0, inf)")
    scale: float = opt(0.25, "random scale 1 +- scale", range="[0, 1)")
    translate: float = opt(0.1, "random shift, fraction of the image size", range="[0, 1]")
    degrees: float = opt(0.0, "random rotation range in degrees", range="[0, 180]")
    hflip: float = opt(0.5, "horizontal flip probability", range="[0, 1]")
    vflip: float = opt(0.0, "vertical flip probability", range="[0, 1]")
    hsv_h: float = opt(0.015, "hue jitter (fraction)", range="[0, 1]")
    hsv_s: float = opt(0.5, "saturation jitter (fraction)", range="[0, 1]")
    hsv_v: float = opt(0.3, "value (brightness) jitter (fraction)", range="[0, 1]")
    threshold: float = opt(0.5, "probability over which a sigmoid head's pixel (or an instance mask pixel) is on",
                           range="[0, 1]")
    conf: float = opt(-1.0, "instance models: confidence threshold (-1: 0.001 for val, 0.25 for predict)",
                      range="[0, 1] or -1")
    iou: float = opt(0.5, "instance models: IoU threshold of non-maximum suppression", range="[0, 1]")
    max_det: int = opt(100, "instance models: most detections kept per image", range="[1, inf)")
    save: bool = opt(True, "predict: write overlays (images or video) and index-mask PNGs")
    alpha: float = opt(0.5, "predict: opacity of the colour overlay", range="[0, 1]")
    tile: str = opt("auto", "predict: sliding-window inference (auto: for images larger than 1.5 x imgsz)",
                    ("auto", "true", "false"))
    overlap: float = opt(0.25, "predict: overlap of sliding windows, fraction of imgsz", range="[0, 1)")
    line_width: int = opt(2, "predict: outline width in pixels", range="[1, inf)")

    def augment(self) -> SegmentAugment:
        return SegmentAugment(self.scale, self.translate, self.degrees, self.hflip, self.vflip, self.hsv_h,
                              self.hsv_s, self.hsv_v)


def model_kind(name: str) -> str:
    return get_model_entry(name, "segment").kind or "semantic"


def model_kwargs(cfg: SegmentConfig) -> dict:
    """Architecture options the config sets (only our U-Nets' width and depth so far)."""
    chosen = {k: v for k, v in (("width", cfg.width), ("depth", cfg.depth)) if v}
    if chosen and get_model_entry(cfg.model, "segment").family != "foveal":
        raise FovealError(f"{', '.join(chosen)}: only unet and resunet take these, not {cfg.model}")
    return chosen


def load_segment_data(cfg: SegmentConfig, kind: str):
    if cfg.data == "shapes":
        return shapes_segmentation_data(instances=kind == "instance")
    if cfg.data == "polyps":
        return polyps_segmentation_data(instances=kind == "instance")
    if not cfg.data:
        raise FovealError("data: name a data set: shapes, polyps, masks:IMAGES/,MASKS/, coco:ann.json,images/ "
                          "or a YOLO segmentation data.yaml")
    from ...data.formats import load_segmentation_data
    from ...data.formats.masks import is_mask_folder

    if is_mask_folder(cfg.data):
        cfg.binary_masks = True  # Kvasir-SEG's layout: the dataset, evaluator and config.yaml read masks as 0/255

    return load_segmentation_data(cfg.data, kind, cfg.classes, cfg.strict, cfg.val_fraction, cfg.binary_masks)


def default_imgsz(cfg) -> int:
    imgsz = cfg.imgsz or (128 if cfg.data == "shapes" else 256)
    if imgsz % 32:
        raise FovealError(f"imgsz: must be a multiple of 32 for segmentation, got {imgsz}")
    return imgsz


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

    def setup(self, data_meta: dict | None = None):
        cfg = self.cfg
        model_kwargs(cfg)  # refuse width/depth on a library model before reading any data
        self.use_data(load_segment_data(cfg, "semantic"), data_meta)
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

    def predictor(self, model, meta, device):
        from .predict import SemanticPredictor

        return SemanticPredictor(self, model, meta, device)

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

    @staticmethod
    def prepare(images):
        """uint8 (B, 3, H, W) -> normalised float, channels_last (faster convolutions on CPU)."""
        mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
        std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
        return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)

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


def logits_to_labels(logits: torch.Tensor, sigmoid: bool, threshold: float) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) int64 class per pixel."""
    if sigmoid:
        return (logits[:, 0].float().sigmoid() > threshold).long()
    return logits.argmax(1)


def unletterbox(logits: torch.Tensor, scale: float, pad, height: int, width: int) -> torch.Tensor:
    """(C, S, S) logits of a letterboxed image -> (C, height, width) logits on the original image."""
    nh, nw = max(1, round(height * scale)), max(1, round(width * scale))
    inside = logits[:, pad[1]:pad[1] + nh, pad[0]:pad[0] + nw]
    if (nh, nw) == (height, width):
        return inside
    return F.interpolate(inside[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]


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
            original = unletterbox(logits, meta["scale"], meta["pad"], item.height, item.width)
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
