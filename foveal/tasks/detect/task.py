"""Object detection: config, data, loss, COCO evaluation, and the info/convert modes.

Prediction on images, video and cameras is tasks/box_predict.py's (shared with pose); the report in report.py.
"""

from dataclasses import dataclass, replace

from ...config import TrainConfig, opt
from ...data.detect_dataset import DetectionDataset, shapes_detection_data
from ...data.detection import DetectionData
from ...data.polyps import polyps_detection_data
from ...data.videos import shapes_video_detection_data
from ...errors import FovealError
from ...files import write_json
from ...ops.boxes import NMS_IOU
from ...registry import get_model_entry
from ...track.config import TrackConfig
from ..boxes import AugmentConfig, BoxEvaluator, BoxOutputConfig, BoxTask

EMBEDDED = ("shapes", "polyps", "shapes_video")
END2END_MODELS = ("yolo_n", "yolo_s", "yolo_m")  # the models with a one-to-one head (end2end=true)
MODES = ("train", "val", "predict", "track", "info", "export", "benchmark", "convert", "features", "explain")


@dataclass
class DetectConfig(BoxOutputConfig, AugmentConfig, TrackConfig, TrainConfig):
    model: str = opt("yolo_n", "architecture name (`foveal models detect` lists them)")
    epochs: int = opt(30, "number of training epochs")
    batch: int = opt(16, "batch size (per process when run with torchrun)")
    lr: float = opt(4e-3, "initial learning rate")
    weight_decay: float = opt(0.05, "weight decay (not applied to biases and norm layers)")
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (fractions allowed)")
    conf: float = opt(-1.0, "confidence threshold (-1: 0.001 for val, 0.25 for predict)", range="[0, 1] or -1")
    iou: float = opt(NMS_IOU, "IoU threshold of non-maximum suppression", range="[0, 1]")
    max_det: int = opt(300, "most detections kept per image", range="[1, inf)")
    end2end: bool = opt(False, "yolo_n/s/m: train a one-to-one head beside the usual one (YOLOv10) and detect "
                               "with it alone: no NMS, in PyTorch or in the exported graph (iou unused)")
    src: str = opt("", "convert: source, e.g. voc:Annotations/,JPEGImages/ or data.yaml")
    dst: str = opt("", "convert: destination, e.g. yolo:out/, coco:out/ or voc:out/")
    segments: bool = opt(False, "convert: keep object outlines (COCO polygons/RLE, YOLO polygons) in a coco: dst")


def check_end2end(cfg: DetectConfig):
    if cfg.end2end and cfg.model not in END2END_MODELS:
        raise FovealError(f"end2end: only {', '.join(END2END_MODELS)} have a one-to-one head, not model={cfg.model}")


def load_detect_data(data: str, strict: bool, val_fraction: float) -> DetectionData:
    if data == "shapes":
        return shapes_detection_data()
    if data == "polyps":
        return polyps_detection_data()
    if data == "shapes_video":
        return shapes_video_detection_data()
    if not data:
        raise FovealError("data: name a data set: shapes, polyps, shapes_video, a YOLO data.yaml, "
                          "coco:ann.json,images/, voc:... or masks:images/,masks/")
    from ...data.formats.detection import load_detection_data

    return load_detection_data(data, strict=strict, val_fraction=val_fraction)


class DetectTask(BoxTask):
    name = "detect"
    Config = DetectConfig
    fitness = "map"
    epoch_columns = ("map50", "map")
    curve_groups = [("loss", []), ("mAP", ["map", "map50", "map75"]), ("learning rate", ["lr"])]
    embedded = EMBEDDED

    def setup(self):
        cfg = self.cfg
        get_model_entry(cfg.model, "detect")
        check_end2end(cfg)
        self.imgsz = cfg.imgsz or 320
        self.check_imgsz(self.imgsz)  # before the data is indexed: a mistake in the command is said first
        self.use_data(load_detect_data(cfg.data, cfg.strict, cfg.val_fraction))
        self.stride = self.rect_stride(cfg.model, self.meta)

    def dataset(self, split: str, train: bool):
        cfg = self.cfg
        return DetectionDataset(self.split_items(split), self.imgsz, cfg.augment() if train else None, self.stride,
                                mosaic_epochs=cfg.epochs - cfg.close_mosaic)

    def check_imgsz(self, imgsz: int):
        if imgsz % 32:
            raise FovealError(f"imgsz: must be a multiple of 32 for detection, got {imgsz}")

    @classmethod
    def trained_config(cls, cfg, meta):
        """As trained: an end2end model's weights rebuild it with its one-to-one head (their model_kwargs)."""
        return replace(super().trained_config(cfg, meta), end2end=bool(meta.get("model_kwargs", {}).get("end2end")))

    def model_kwargs(self) -> dict:
        return {**super().model_kwargs(), **({"end2end": True} if self.cfg.end2end else {})}

    def predictor(self, model, device):
        from ..box_predict import BoxPredictor

        return BoxPredictor(self, model, device)

    @classmethod
    def model_for_info(cls, cfg):
        imgsz = cfg.imgsz or 320
        check_end2end(cfg)
        kwargs = {"num_classes": cfg.num_classes or 80, "imgsz": imgsz, **({"end2end": True} if cfg.end2end else {})}
        return cfg.model, kwargs, imgsz

    def new_evaluator(self):
        return BoxEvaluator(self.data.splits[self.eval_split], self.classes)

    def per_class_table(self, result):
        from .report import per_class_table

        return per_class_table(result, self.classes, self.data.splits[self.eval_split])

    def write_report(self, run_dir, history, result, model):
        from .report import write_detect_report

        items = self.data.splits[self.eval_split]
        write_detect_report(run_dir, f"detect {self.cfg.model} on {self.cfg.data}", history, result, self.classes, items)
        if self.cfg.save_json:
            from ...metrics.detection import coco_results

            write_json(run_dir / "predictions.json", coco_results(items, result.details["detections"], self.classes,
                                                                  self.data.category_ids))


# ---- a mode only detection has (train, val, predict and info: the engine) ----------------------------

def convert(cfg: DetectConfig, log=print) -> str:
    """Rewrite a detection data set in another format (YOLO, COCO, VOC)."""
    from ...data.formats.detection import convert as convert_formats

    summary = convert_formats(cfg.src, cfg.dst, strict=cfg.strict, segments=cfg.segments)
    if cfg.verbose:
        log(summary)
    return summary

