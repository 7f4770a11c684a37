"""Image classification: config, data, loss, metrics, report, and the val/predict/info modes."""

import json
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from ..config import TrainConfig, opt
from ..data.classify import EMBEDDED, LabelledImages, Transformed, load_classify_data
from ..data.images import read_image, resolve_source
from ..data.transforms import IMAGENET_MEAN, IMAGENET_STD, AUTO_AUGMENT, eval_transform, train_transform
from ..engine.checkpoint import load_trained, load_weights
from ..engine.device import configure_cpu, select_device
from ..engine.runs import new_run_dir
from ..engine.trainer import evaluate, move_to
from ..engine.transfer import head_prefixes
from ..errors import FovealError
from ..metrics.classification import confusion_matrix, per_class_scores, summarize, topk_correct
from ..registry import create_model, get_model_entry
from ..report import Section, Table, image_grid, plot_bars, plot_confusion, plot_curves, write_report
from .base import EvalResult, Evaluator, Task


@dataclass
class ClassifyConfig(TrainConfig):
    model: str = opt("simple_cnn", "architecture name (`foveal models classify` lists them)")
    hflip: float = opt(-1.0, "horizontal flip probability (-1: 0.5, or 0 where a flip changes the class, as digits)")
    crop_scale: float = opt(0.6, "random-resized-crop minimum area fraction (1: no crop)")
    rotate: float = opt(0.0, "random rotation range in degrees")
    color_jitter: float = opt(0.0, "brightness/contrast/saturation jitter strength")
    auto_augment: str = opt("", "automatic augmentation policy", ("", *AUTO_AUGMENT))
    erasing: float = opt(0.0, "random-erasing probability")
    topk: int = opt(5, "predict: how many classes to show per image")


MODES = ("train", "val", "predict", "info")


class ClassifyTask(Task):
    name = "classify"
    Config = ClassifyConfig
    fitness = "top1"
    curve_groups = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["top1", "top5"]),
                    ("learning rate", ["lr"])]

    def setup(self, data_meta: dict | None = None):
        cfg = self.cfg
        get_model_entry(cfg.model, "classify")  # fail on a bad model name before loading data
        self.use_data(load_classify_data(cfg.data, cfg.val_fraction, cfg.strict), data_meta)
        self.imgsz = cfg.imgsz or self.data.natural_imgsz
        self.hflip = cfg.hflip if cfg.hflip >= 0 else (0.0 if self.data.flip_changes_class else 0.5)

    def in_memory(self) -> bool:
        return self.data.splits["train"].in_memory

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
        return {"task": "classify", "model": self.cfg.model, "classes": self.classes, "imgsz": self.imgsz,
                "model_kwargs": {"num_classes": len(self.classes), "imgsz": self.imgsz},
                "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD), "data": data_reference(self.cfg.data)}

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
        write_classify_report(run_dir, f"classify {self.cfg.model} on {self.cfg.data}", history,
                              result, self.classes, self.data.splits["val"], self.curve_groups)


def data_reference(data: str) -> str:
    """The data as `val` can find it again from any folder: embedded names as they are, paths absolute,
    also inside the FORM:PATH,PATH;PATH,... strings of detection and segmentation data."""
    if data in EMBEDDED:
        return data
    form, colon, rest = data.partition(":")
    if colon and len(form) > 1 and form.isalpha():  # coco:..., masks:... (not a Windows drive C:)
        return f"{form}:" + ";".join(",".join(str(Path(p.strip()).resolve()) for p in part.split(","))
                                     for part in rest.split(";"))
    return str(Path(data).resolve())


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


def sample_grid(source: LabelledImages, details: dict, classes: list[str], count: int = 32) -> bytes:
    """Val images with 'true -> predicted (confidence)': wrong ones first, then right ones."""
    targets, predictions = details["targets"], details["predictions"]
    wrong = (targets != predictions).nonzero().flatten().tolist()
    right = (targets == predictions).nonzero().flatten().tolist()
    chosen = wrong[: count // 2] + right[: count - min(len(wrong), count // 2)]
    images = [source.load(i).permute(1, 2, 0).numpy() for i in chosen]
    captions = [f"{classes[targets[i]]}→{classes[predictions[i]]} {details['confidences'][i]:.2f}" for i in chosen]
    colors = ["green" if targets[i] == predictions[i] else "red" for i in chosen]
    return image_grid(images, captions, colors)


def write_classify_report(run_dir: Path, title: str, history: list[dict], result: EvalResult,
                          classes: list[str], source: LabelledImages, curve_groups):
    details = result.details
    scores = per_class_scores(details["confusion"])
    table = Table(["class", "precision", "recall", "f1", "support"],
                  [[c, scores["precision"][i].item(), scores["recall"][i].item(), scores["f1"][i].item(),
                    int(scores["support"][i])] for i, c in enumerate(classes)])
    sections = [Section("summary", [result.metrics])]
    if history:
        sections.append(Section("training curves", [plot_curves(history, curve_groups)]))
    sections += [
        Section("confusion matrix", [plot_confusion(details["confusion"].numpy(), classes)]),
        Section("per-class scores", [table, plot_bars({c: scores["f1"][i].item() for i, c in enumerate(classes)},
                                                      "F1 per class")]),
        Section("validation predictions", ["true→predicted confidence; red: wrong",
                                           sample_grid(source, details, classes)]),
    ]
    write_report(run_dir / "report.html", title, sections)


# ---- modes other than train -------------------------------------------------------------------

def val(cfg: ClassifyConfig, log=print) -> EvalResult:
    """Score trained weights on a split; writes runs/classify/valN with metrics.json and report.html."""
    device = select_device(cfg.device)
    configure_cpu(cfg.threads)
    model, meta = load_trained(cfg.weights, "classify", device)
    cfg = replace(cfg, model=meta["model"], imgsz=meta["imgsz"], data=cfg.data or meta.get("data", ""))
    task = ClassifyTask(cfg)
    task.setup(data_meta=meta)
    loader = torch.utils.data.DataLoader(task.dataset(cfg.split, train=False), batch_size=cfg.batch,
                                         num_workers=0 if task.in_memory() else min(4, torch.get_num_threads()))
    result = evaluate(task, model, loader, device)
    run_dir = new_run_dir(cfg.project, "classify", cfg.name, cfg.exist_ok, stem="val")
    (run_dir / "metrics.json").write_text(json.dumps(result.metrics, indent=2))
    write_classify_report(run_dir, f"val {cfg.weights} on {cfg.data} ({cfg.split})", [], result,
                          task.classes, task.data.splits[cfg.split], task.curve_groups)
    if cfg.verbose:
        log(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
        log(f"report: {run_dir / 'report.html'}")
    return result


@torch.no_grad()
def predict(cfg: ClassifyConfig, log=print) -> list[dict]:
    """Top-k classes for each image of `source`; written to runs/classify/predictN/predictions.json and .csv."""
    device = select_device(cfg.device)
    configure_cpu(cfg.threads)
    model, meta = load_trained(cfg.weights, "classify", device)
    paths = resolve_source(cfg.source)
    transform = eval_transform(meta["imgsz"], meta["mean"], meta["std"])
    classes, k = meta["classes"], min(cfg.topk, len(meta["classes"]))
    results = []
    for start in range(0, len(paths), cfg.batch):
        chunk, images = [], []
        for path in paths[start: start + cfg.batch]:
            try:
                images.append(transform(read_image(path)))
                chunk.append(path)
            except Exception as e:  # one bad file must not stop the others
                log(f"skipping {path}: not a readable image ({e})")
        if not images:
            continue
        probs = model(move_to(torch.stack(images), device)).float().softmax(1).cpu()
        top = probs.topk(k, dim=1)
        for path, p, i in zip(chunk, top.values, top.indices):
            results.append({"path": str(path), "top": [{"class": classes[c], "score": round(s.item(), 6)}
                                                        for s, c in zip(p, i)]})
    run_dir = new_run_dir(cfg.project, "classify", cfg.name, cfg.exist_ok, stem="predict")
    (run_dir / "predictions.json").write_text(json.dumps(results, indent=2))
    lines = ["path,class,score"] + [f"{r['path']},{r['top'][0]['class']},{r['top'][0]['score']}" for r in results]
    (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n")
    if cfg.verbose:
        for r in results:
            log(f"{r['path']}: " + ", ".join(f"{t['class']} {t['score']:.3f}" for t in r["top"]))
        log(f"predictions: {run_dir / 'predictions.json'}")
    return results


def info(cfg: ClassifyConfig, log=print):
    """Layer table (output shape, parameters, MACs) of a model at cfg.imgsz."""
    from ..models.info import format_info, model_info, parameters_on_meta

    if cfg.weights:
        _, meta = load_weights(cfg.weights)
        name, kwargs = meta["model"], meta["model_kwargs"]
    else:
        name = cfg.model
        num_classes = cfg.num_classes or (len(load_classify_data(cfg.data).classes) if cfg.data else 1000)
        kwargs = {"num_classes": num_classes, "imgsz": cfg.imgsz or 224}
    imgsz = cfg.imgsz or kwargs["imgsz"]
    with parameters_on_meta():
        model = create_model(name, "classify", **{**kwargs, "imgsz": imgsz})
    result = model_info(model, imgsz)
    if cfg.verbose:
        log(f"{name} at {imgsz}x{imgsz}, {kwargs['num_classes']} classes")
        log(format_info(result))
    return result

