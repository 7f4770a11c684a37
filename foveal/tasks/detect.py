"""Object detection: config, data, loss, COCO evaluation, and the val/info/convert modes.

Prediction on images, video and cameras is in detect_predict.py; the report in detect_report.py.
"""

import json
from dataclasses import dataclass, replace

import torch

from ..config import TrainConfig, opt
from ..data.detect_dataset import Augment, DetectionDataset, collate, shapes_detection_data
from ..data.detection import DetectionData
from ..engine.checkpoint import load_trained
from ..engine.device import configure_cpu, select_device
from ..engine.runs import new_run_dir
from ..engine.trainer import evaluate
from ..engine.transfer import prefixes_outside_backbone
from ..errors import FovealError
from ..registry import create_model, get_model_entry
from .base import EvalResult, Evaluator, Task

EMBEDDED = ("shapes",)
MODES = ("train", "val", "predict", "info", "convert")


@dataclass
class DetectConfig(TrainConfig):
    model: str = opt("yolo_n", "architecture name (`foveal models detect` lists them)")
    epochs: int = opt(30, "number of training epochs")
    batch: int = opt(16, "batch size (per process when run with torchrun)")
    lr: float = opt(4e-3, "initial learning rate")
    weight_decay: float = opt(0.05, "weight decay (not applied to biases and norm layers)")
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (fractions allowed)")
    conf: float = opt(-1.0, "confidence threshold (-1: 0.001 for val, 0.25 for predict)")
    iou: float = opt(0.6, "IoU threshold of non-maximum suppression")
    max_det: int = opt(300, "most detections kept per image")
    mosaic: float = opt(1.0, "probability of a 4-image mosaic in training")
    close_mosaic: int = opt(5, "turn mosaic off for the last N epochs")
    scale: float = opt(0.5, "random scale 1 +- scale")
    translate: float = opt(0.1, "random shift, fraction of the image size")
    degrees: float = opt(0.0, "random rotation range in degrees")
    hflip: float = opt(0.5, "horizontal flip probability")
    hsv_h: float = opt(0.015, "hue jitter (fraction)")
    hsv_s: float = opt(0.7, "saturation jitter (fraction)")
    hsv_v: float = opt(0.4, "value (brightness) jitter (fraction)")
    save: bool = opt(True, "predict: write annotated images or video")
    save_txt: bool = opt(False, "predict: also write YOLO txt labels (class cx cy w h conf)")
    line_width: int = opt(2, "predict: box line width in pixels")
    src: str = opt("", "convert: source, e.g. voc:Annotations/,JPEGImages/ or data.yaml")
    dst: str = opt("", "convert: destination, e.g. yolo:out/, coco:out/ or voc:out/")
    segments: bool = opt(False, "convert: keep object outlines (COCO polygons/RLE, YOLO polygons) in a coco: dst")


def load_detect_data(data: str, strict: bool, val_fraction: float) -> DetectionData:
    if data == "shapes":
        return shapes_detection_data()
    if not data:
        raise FovealError("data: name a data set: shapes, a YOLO data.yaml, coco:ann.json,images/ or voc:...")
    from ..data.formats import load_detection_data

    return load_detection_data(data, strict=strict, val_fraction=val_fraction)


class DetectTask(Task):
    name = "detect"
    Config = DetectConfig
    fitness = "map"
    curve_groups = [("loss", []), ("mAP", ["map", "map50", "map75"]), ("learning rate", ["lr"])]
    eval_split = "val"

    def setup(self, data_meta: dict | None = None):
        cfg = self.cfg
        get_model_entry(cfg.model, "detect")
        self.use_data(load_detect_data(cfg.data, cfg.strict, cfg.val_fraction), data_meta)
        self.imgsz = cfg.imgsz or 320
        if self.imgsz % 32:
            raise FovealError(f"imgsz: must be a multiple of 32 for detection, got {self.imgsz}")
        self.datasets = {}

    def dataset(self, split: str, train: bool):
        cfg = self.cfg
        augment = Augment(cfg.mosaic, cfg.scale, cfg.translate, cfg.degrees, cfg.hflip, cfg.hsv_h, cfg.hsv_s,
                          cfg.hsv_v) if train else None
        self.datasets[split] = DetectionDataset(self.split_items(split), self.imgsz, augment, cfg.strict)
        return self.datasets[split]

    def collate(self, samples):
        return collate(samples)

    def on_epoch_start(self, epoch: int):
        train = self.datasets.get("train")
        if train is not None:
            train.mosaic_enabled = epoch < self.cfg.epochs - self.cfg.close_mosaic

    def build_model(self):
        conf = self.cfg.conf if self.cfg.conf >= 0 else 0.001
        return create_model(self.cfg.model, "detect", num_classes=len(self.classes), imgsz=self.imgsz,
                            conf=conf, iou=self.cfg.iou, max_det=self.cfg.max_det)

    def head(self, model):
        return prefixes_outside_backbone(model)

    def weights_meta(self) -> dict:
        from .classify import data_reference

        return {"task": "detect", "model": self.cfg.model, "classes": self.classes, "imgsz": self.imgsz,
                "model_kwargs": {"num_classes": len(self.classes), "imgsz": self.imgsz},
                "data": data_reference(self.cfg.data) if self.cfg.data not in EMBEDDED else self.cfg.data}

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

    def new_evaluator(self):
        return DetectEvaluator(self.data.splits[self.eval_split], self.classes)

    def write_report(self, run_dir, history, result, model):
        from .detect_report import write_detect_report

        write_detect_report(run_dir, f"detect {self.cfg.model} on {self.cfg.data}", history, result, self.classes,
                            self.data.splits[self.eval_split])


class DetectEvaluator(Evaluator):
    """Collects detections mapped back to each original image, then runs COCO evaluation."""

    def __init__(self, items, classes):
        self.items, self.classes = items, classes
        self.detections = [None] * len(items)

    def update(self, outputs, batch):
        for output, target in zip(outputs, batch[1]):
            pad = target["pad"].to(output["boxes"].device)
            item = self.items[target["index"]]
            boxes = (output["boxes"].float() - pad.repeat(2)) / target["scale"]
            boxes[:, 0::2] = boxes[:, 0::2].clamp(0, item.width)
            boxes[:, 1::2] = boxes[:, 1::2].clamp(0, item.height)
            self.detections[target["index"]] = {"boxes": boxes.cpu(), "scores": output["scores"].float().cpu(),
                                                "labels": output["labels"].cpu()}

    def compute(self) -> EvalResult:
        from ..metrics.detection import coco_evaluate, detection_confusion_matrix

        empty = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
        detections = [d if d is not None else empty for d in self.detections]
        result = coco_evaluate(self.items, detections, self.classes)
        confusion = detection_confusion_matrix(self.items, detections, len(self.classes))
        return EvalResult(dict(result.stats), {"coco": result, "detections": detections, "confusion": confusion})


# ---- modes other than train ---------------------------------------------------------------------

def val(cfg: DetectConfig, log=print) -> EvalResult:
    """COCO metrics of trained weights on a split; writes runs/detect/valN (metrics.json, report.html)."""
    device = select_device(cfg.device)
    configure_cpu(cfg.threads)
    model, meta = load_trained(cfg.weights, "detect", device, conf=cfg.conf if cfg.conf >= 0 else 0.001,
                               iou=cfg.iou, max_det=cfg.max_det)
    cfg = replace(cfg, model=meta["model"], imgsz=meta["imgsz"], data=cfg.data or meta.get("data", ""))
    task = DetectTask(cfg)
    task.setup(data_meta=meta)
    task.eval_split = cfg.split
    loader = torch.utils.data.DataLoader(task.dataset(cfg.split, train=False), batch_size=cfg.batch,
                                         collate_fn=collate, num_workers=0 if task.in_memory() else 2)
    result = evaluate(task, model, loader, device)
    run_dir = new_run_dir(cfg.project, "detect", cfg.name, cfg.exist_ok, stem="val")
    (run_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    task.cfg = cfg
    task.write_report(run_dir, [], result, model)
    if cfg.verbose:
        log(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
        log(f"report: {run_dir / 'report.html'}")
    return result


def info(cfg: DetectConfig, log=print):
    from ..models.info import data_dependent_note, format_info, model_info

    imgsz = cfg.imgsz or 320
    model = create_model(cfg.model, "detect", num_classes=cfg.num_classes or 80, imgsz=imgsz).eval()
    result = model_info(model, imgsz)
    if cfg.verbose:
        log(f"{cfg.model} at {imgsz}x{imgsz}")
        log(format_info(result))
        if note := data_dependent_note(model):
            log(note)
    return result


def convert(cfg: DetectConfig, log=print) -> str:
    """Rewrite a detection data set in another format (YOLO, COCO, VOC)."""
    from ..data.formats import convert as convert_formats

    summary = convert_formats(cfg.src, cfg.dst, strict=cfg.strict, segments=cfg.segments)
    if cfg.verbose:
        log(summary)
    return summary


def predict(cfg: DetectConfig, log=print):
    from .detect_predict import predict as run_predict

    return run_predict(cfg, log)

