"""What a task (classify, detect, segment, ...) gives the shared engine.

The engine owns the loop, the optimizer, checkpoints, resume, devices and processes; a task
owns its data, models, loss, metrics and report, through the methods below.
"""

import contextlib
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from ..config import TrainConfig
from ..data.references import data_reference
from ..errors import FovealError


@dataclass
class EvalResult:
    metrics: dict[str, float]  # flat numbers: go into metrics.csv and the console
    details: dict = field(default_factory=dict)  # anything else for the report (confusion matrix, ...)


class Evaluator:
    """Accumulates model outputs over a split; `compute` turns them into an EvalResult."""

    def update(self, outputs, batch):
        raise NotImplementedError

    def compute(self) -> EvalResult:
        raise NotImplementedError


PHASES = ("preprocess", "inference", "postprocess")  # of a model call in predict, timed apart


@dataclass(frozen=True)
class Placement:
    """Where a height x width frame lies in the model input a Predictor made of it: resized by (scale_x,
    scale_y), then shifted right and down by pad = (left, top) pixels; a point p maps to p * scale + pad."""

    height: int
    width: int
    scale_x: float
    scale_y: float
    pad: tuple[int, int] = (0, 0)


class Predictor:
    """What a task does with each frame in `predict` (engine/modes.py runs the frames through it).

    `infer` is timed (model and post-processing); `annotate` adds the frame's entries to `results`
    (saved as predictions.json) and returns (the image to save or None, a one-line summary).
    """

    def __init__(self, task: "Task", model: nn.Module, device: torch.device):
        self.cfg, self.model, self.meta, self.device = task.cfg, model, task.meta, device
        self.run_dir: Path | None = None  # set by the engine once every option has been checked here
        self.classes, self.imgsz = self.meta["classes"], self.meta["imgsz"]
        self.results: list[dict] = []
        self.seconds = dict.fromkeys(PHASES, 0.0)  # summed over the frames by `phase`

    @contextlib.contextmanager
    def phase(self, name: str):
        """Time a part of `infer` (one of PHASES); the engine reports the split per image."""
        if self.device.type == "cuda":  # kernels run asynchronously: wait for them at each boundary
            torch.cuda.synchronize(self.device)
        started = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] += time.perf_counter() - started

    def prepare(self, pixels: np.ndarray) -> tuple[torch.Tensor, Placement]:
        """The (1, 3, h, w) model input `infer` makes of an (H, W, 3) uint8 RGB frame, and where the frame
        lies in it (features and explain look at the model through this, so they see what predict sees)."""
        raise NotImplementedError

    def infer(self, pixels: np.ndarray):
        raise NotImplementedError

    def annotate(self, frame, output) -> tuple[np.ndarray | None, str]:
        raise NotImplementedError

    def draw(self, frame, output) -> np.ndarray | None:
        """The (H, W, 3) uint8 RGB picture of `output` that save=true writes (the Python API's Results.plot)."""
        return None

    def fields(self, frame, output) -> dict:
        """The Python API's Results attributes of `output` (boxes, masks, probs, ...: engine/results.py)."""
        return {}

    def finish(self) -> str:
        """Write any further output once every frame is done; returns a summary for the last log line."""
        return f"{len(self.results)} results"


class Task:
    name = ""
    Config = TrainConfig
    fitness = ""  # the val metric to maximise: picks best.safetensors and drives early stopping
    curve_groups: list[tuple[str, list[str]]] = []  # report plots of metrics.csv columns
    epoch_columns: tuple[str, ...] = ()  # the val metrics of the console's epoch table (else the fitness)
    items_name = "images"  # what the training log counts in the splits
    embedded: tuple[str, ...] = ()  # data sets foveal makes itself (data=NAME)
    eval_split = "val"  # the split the evaluator scores: val in training, cfg.split in `val`
    info_on_meta = False  # `info` may build the model without weight memory (its cost is shape-only)
    inputs, input_name = "images", "image"  # what predict's log calls the task's inputs (a video's: frames)
    finds_objects = False  # its predictions are boxes (detect, instance segment): `track` follows them
    speed_unit = "frames/s"  # predict's speed (a forecast reads one window of each series)

    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.meta: dict | None = None  # the metadata of trained weights (Task.trained); None in training

    @classmethod
    def create(cls, cfg: TrainConfig) -> "Task":
        """The task object for `cfg`; a task whose models come in kinds may pick a subclass here."""
        return cls(cfg)

    @classmethod
    def trained(cls, cfg: TrainConfig, meta: dict) -> "Task":
        """The task of trained weights whose metadata is `meta`, the one way it enters: cfg with what the
        weights fix (trained_config), the kind of task their model needs (create), and `meta` kept for
        setup (the weights' classes, scaling, ...), predict_source and the predictor."""
        task = cls.create(cls.trained_config(cfg, meta))
        task.meta = meta
        return task

    @classmethod
    def trained_config(cls, cfg: TrainConfig, meta: dict) -> TrainConfig:
        """cfg with what trained weights fix (architecture, input size), and the data to score: the
        training run's own val split, or data the user names as given (a single set whole: no share
        of it is held back, val_fraction=0)."""
        if cfg.data:
            return replace(cfg, model=meta["model"], imgsz=meta["imgsz"], val_fraction=0.0)
        return replace(cfg, model=meta["model"], imgsz=meta["imgsz"], data=meta.get("data", ""),
                       val_fraction=meta.get("config", {}).get("val_fraction", cfg.val_fraction))

    @classmethod
    def model_for_info(cls, cfg: TrainConfig) -> tuple[str, dict, int]:
        """(name, create_model keyword arguments, input size) of the model `info` describes without weights."""
        raise NotImplementedError

    @classmethod
    def info_input(cls, kwargs: dict, imgsz: int) -> tuple[tuple, str]:
        """The input `info` profiles the model of create_model(**kwargs) with (one image of imgsz, or what
        the task's models read instead), and how the log line describes it."""
        channels = kwargs.get("channels", 3)  # restore's grey models take one
        outputs = (f"{kwargs['num_classes']} classes" if "num_classes" in kwargs
                   else f"{channels} channel(s), scale {kwargs.get('scale', 1)}")
        return (1, channels, imgsz, imgsz), f"at {imgsz}x{imgsz}, {outputs}"

    def inference_options(self, mode: str) -> dict:
        """Post-processing attributes of the model for `mode` (val or predict), e.g. a detector's conf."""
        return {}

    def predict_source(self):
        """The Frames `predict` runs the Predictor over, opened now, so that bad input fails before any output:
        those of cfg.source (images, folders, globs, videos, cameras); a task whose input is not pictures
        makes its own from the weights' metadata (forecast: one Frame per series of data=, its values)."""
        from ..data.stream import frames

        if not self.cfg.source:
            raise FovealError("source: name an image, a folder, a glob, a video file or a camera index (0)")
        return frames(self.cfg.source, self.cfg.vid_stride)

    def predictor(self, model: nn.Module, device: torch.device) -> Predictor:
        """The Predictor of trained `model` (the task made by Task.trained); it refuses bad predict options
        (one line) as it is made."""
        raise NotImplementedError

    def explain_target(self, model: nn.Module, image: torch.Tensor, inside: torch.Tensor, target: str,
                       classes: list[str]):
        """What `explain` explains in one prepared (1, 3, h, w) `image` (`inside`: its (h, w) pixels that show
        the frame, not padding): an inspect.targets.ExplainTarget (the module to run, the scalar it scores,
        its name and score) chosen by cfg.target `target`, or None when there is nothing to explain."""
        raise FovealError(f"explain: not available for {self.cfg.model} yet")

    # data and model
    def setup(self):
        """Load the data (with the classes of self.meta when evaluating trained weights)."""
        raise NotImplementedError

    def use_data(self, data):
        """Keep the loaded data (with `.classes` and `.splits`); trained weights need their own classes."""
        if self.meta and self.meta.get("classes") != data.classes:
            raise FovealError(f"data: its classes {data.classes} differ from the weights' {self.meta.get('classes')}")
        self.data = data

    @property
    def classes(self) -> list[str]:
        return self.data.classes

    def split_items(self, split: str):
        """The data's `split` (train, val, test), or one line saying which splits there are."""
        if split not in self.data.splits:
            raise FovealError(f"split: the data has no '{split}' split (it has {', '.join(self.data.splits)})")
        return self.data.splits[split]

    def dataset(self, split: str, train: bool) -> Dataset:
        raise NotImplementedError

    def frames(self, split: str, count: int) -> list[np.ndarray]:
        """Up to `count` images of `split` as predict receives them, (H, W, 3) uint8 RGB, decoded now
        (benchmark times predict on them)."""
        from ..data.detect_dataset import read_rgb

        items = self.split_items(split)
        if not len(items):
            raise FovealError(f"split: the data's '{split}' split is empty: nothing to time")
        if hasattr(items, "load"):  # classification's LabelledImages: (3, H, W) tensors
            return [np.ascontiguousarray(items.load(i).permute(1, 2, 0).numpy()) for i in range(min(count, len(items)))]
        return [read_rgb(items[i]) for i in range(min(count, len(items)))]

    def collate(self, samples):
        return torch.utils.data.default_collate(samples)

    def in_memory(self) -> bool:
        """True when the data is already decoded in RAM (its items hold `pixels`, as the synthetic
        scenes do): worker processes would only add overhead."""
        items = next(iter(self.data.splits.values()), [])  # any split: `val` data may have no train split
        return all(getattr(item, "pixels", None) is not None for item in items[:1])

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def check_imgsz(self, imgsz: int):
        """Refuse (one line) an input size the task's models cannot take (setup, and export before tracing)."""

    def inference_model(self, model: nn.Module) -> nn.Module:
        """The eval-mode `model` as evaluation and prediction run it (a fused copy for models that fold
        their BatchNorms); `model` itself is left as it is, as training goes on with it."""
        return model

    def head(self, model: nn.Module) -> list[str]:
        """Parameter-name prefixes of the part that depends on the classes (for freeze and backbone_lr)."""
        return []

    def model_kwargs(self) -> dict:
        """What create_model needs besides the name to rebuild this model (saved in the weights)."""
        return {"num_classes": len(self.classes), "imgsz": self.imgsz}

    def weights_meta(self) -> dict:
        """What the weights file records to rebuild the model and its input; tasks add their own keys."""
        cfg = self.cfg
        return {"task": self.name, "model": cfg.model, "classes": self.classes, "imgsz": self.imgsz,
                "model_kwargs": self.model_kwargs(), "data": data_reference(cfg.data, self.embedded)}

    # one step, one evaluation
    def loss(self, model: nn.Module, batch) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forward_eval(self, model: nn.Module, batch):
        raise NotImplementedError

    def new_evaluator(self) -> Evaluator:
        raise NotImplementedError

    # output
    def per_class_table(self, result: EvalResult):
        """The report.html Table of per-class scores that `val` also prints, or None (restore, forecast)."""
        return None

    def write_report(self, run_dir: Path, history: list[dict], result: EvalResult, model: nn.Module):
        raise NotImplementedError
