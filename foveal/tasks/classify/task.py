"""Image classification: config, data, loss and metrics, and the info mode (predictions: predict.py, the report:
report.py)."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...config import TrainConfig, opt
from ...data.classify import EMBEDDED, Transformed, load_classify_data
from ...data.transforms import AUTO_AUGMENT, IMAGENET_MEAN, IMAGENET_STD, eval_transform, train_transform
from ...engine.contract import EvalResult, Evaluator, Task
from ...engine.transfer import head_prefixes
from ...errors import FovealError
from ...metrics.classification import confusion_matrix, summarize, topk_correct
from ...registry import create_model, get_model_entry
from .predict import ClassifyPredictor
from .report import per_class_table, write_classify_report

@dataclass
class ClassifyConfig(TrainConfig):
    model: str = opt("simple_cnn", "architecture name (`foveal models classify` lists them)")
    save: bool = opt(False, "predict: also write each image with its top classes written above it")
    hflip: float = opt(-1.0, "horizontal flip probability (-1: 0.5, or 0 where a flip changes the class, as digits)",
                       range="[0, 1] or -1")
    crop_scale: float = opt(0.6, "random-resized-crop minimum area fraction (1: no crop)", range="(0, 1]")
    rotate: float = opt(0.0, "random rotation range in degrees", range="[0, 180]")
    color_jitter: float = opt(0.0, "brightness/contrast/saturation jitter strength", range="[0, inf)")
    auto_augment: str = opt("", "automatic augmentation policy", ("", *AUTO_AUGMENT))
    erasing: float = opt(0.0, "random-erasing probability", range="[0, 1]")
    topk: int = opt(5, "predict: how many classes to show per image", range="[1, inf)")


MODES = ("train", "val", "predict", "info", "export", "benchmark", "features", "explain")


class ClassifyTask(Task):
    name = "classify"
    Config = ClassifyConfig
    fitness = "top1"
    epoch_columns = ("top1", "top5")
    curve_groups = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["top1", "top5"]),
                    ("learning rate", ["lr"])]
    embedded = EMBEDDED
    info_on_meta = True

    def setup(self):
        cfg = self.cfg
        get_model_entry(cfg.model, "classify")  # fail on a bad model name before loading data
        self.use_data(load_classify_data(cfg.data, cfg.val_fraction, cfg.strict))
        self.imgsz = cfg.imgsz or self.data.natural_imgsz
        self.hflip = cfg.hflip if cfg.hflip >= 0 else (0.0 if self.data.flip_changes_class else 0.5)

    def in_memory(self) -> bool:
        return next(iter(self.data.splits.values())).in_memory

    def dataset(self, split: str, train: bool):
        cfg = self.cfg
        transform = (train_transform(self.imgsz, self.hflip, cfg.crop_scale, cfg.rotate, cfg.color_jitter,
                                     cfg.auto_augment, cfg.erasing) if train else eval_transform(self.imgsz))
        return Transformed(self.split_items(split), transform)

    def build_model(self):
        return create_model(self.cfg.model, "classify", num_classes=len(self.classes), imgsz=self.imgsz)

    def head(self, model):
        return head_prefixes(model, len(self.classes))

    def weights_meta(self) -> dict:
        return {**super().weights_meta(), "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)}

    def loss(self, model, batch):
        images, targets = batch
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        logits = model(images)
        loss = F.cross_entropy(logits.float(), targets, label_smoothing=self.cfg.label_smoothing)
        return loss, {"loss": loss.item()}

    def forward_eval(self, model, batch):
        images = batch[0]
        if self.cfg.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return model(images).float()

    def new_evaluator(self):
        return ClassifyEvaluator(len(self.classes))

    def write_report(self, run_dir, history, result, model):
        write_classify_report(run_dir, f"classify {self.cfg.model} on {self.cfg.data} ({self.eval_split})", history,
                              result, self.classes, self.data.splits[self.eval_split], self.curve_groups)

    def per_class_table(self, result):
        return per_class_table(result, self.classes)

    def predictor(self, model, device):
        return ClassifyPredictor(self, model, device)

    def explain_target(self, model, image, inside, target, classes):
        from ...inspect.targets import classifier_target

        return classifier_target(model, image, target, classes)

    @classmethod
    def model_for_info(cls, cfg):
        num_classes = cfg.num_classes or (len(load_classify_data(cfg.data).classes) if cfg.data else 1000)
        return cfg.model, {"num_classes": num_classes, "imgsz": cfg.imgsz or 224}, cfg.imgsz or 224


class ClassifyEvaluator(Evaluator):
    """Cross-entropy, top-1/top-5 and the confusion matrix over a split."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes
        self.loss_sum, self.count, self.hits = 0.0, 0, {1: 0, 5: 0}
        self.predictions, self.confidences, self.targets = [], [], []

    def update(self, logits, batch):
        targets = batch[1]
        self.loss_sum += F.cross_entropy(logits, targets, reduction="sum").item()
        self.count += len(targets)
        for k, n in topk_correct(logits, targets, (1, 5)).items():
            self.hits[k] += n
        probs = logits.softmax(1)
        confidence, predicted = probs.max(1)
        self.predictions.append(predicted.cpu())
        self.confidences.append(confidence.cpu())
        self.targets.append(targets.cpu())

    def compute(self) -> EvalResult:
        if not self.count:
            raise FovealError("the evaluation split is empty")
        targets, predictions = torch.cat(self.targets), torch.cat(self.predictions)
        confusion = confusion_matrix(targets, predictions, self.num_classes)
        summary = summarize(confusion)
        metrics = {"val_loss": self.loss_sum / self.count, "top1": self.hits[1] / self.count,
                   "top5": self.hits[5] / self.count, "precision": summary["precision"],
                   "recall": summary["recall"], "f1": summary["f1"]}
        return EvalResult(metrics, {"confusion": confusion, "targets": targets, "predictions": predictions,
                                    "confidences": torch.cat(self.confidences)})
