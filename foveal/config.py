"""Typed run configuration: defaults in code, then a YAML file (`cfg=`), then `key=value` on top.

Every task has one dataclass; each field carries a one-line description and, if it is a number,
its valid range (`foveal TASK help` prints the table). Unknown keys, badly typed values and values out
of range are a `FovealError` naming the key, before any work starts.
"""

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import FovealError, did_you_mean
from .files import read_text, write_text


@dataclass(frozen=True)
class Range:
    """The valid values of a numeric key: an interval, plus special values outside it (-1: "auto")."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool
    special: tuple = ()

    def __contains__(self, value) -> bool:
        if value in self.special:
            return True
        above = value >= self.low if self.low_closed else value > self.low
        below = value <= self.high if self.high_closed else value < self.high
        return above and below  # False for NaN

    def __str__(self) -> str:
        """'>= 1', '> 0', '[0, 1)', '[0, 1] or -1': how `help` and the errors show it."""
        if self.high == math.inf:
            text = f"{'>=' if self.low_closed else '>'} {_number(self.low)}"
        else:
            text = (f"{'[' if self.low_closed else '('}{_number(self.low)}, "
                    f"{_number(self.high)}{']' if self.high_closed else ')'}")
        return " or ".join([text, *map(_number, self.special)])


_INTERVAL = re.compile(r"([\[(])\s*(\S+?)\s*,\s*(\S+?)\s*([\])])")


def parse_range(text: str) -> Range:
    """'[1, inf)', '(0, 1]', '[0, 1] or -1' -> Range (a mistake fails at import, where it is written)."""
    interval, *special = [part.strip() for part in text.split(" or ")]
    match = _INTERVAL.fullmatch(interval)
    if not match:
        raise ValueError(f"range '{text}': expected an interval such as '[0, 1)' or '(0, inf)'")
    opening, low, high, closing = match.groups()
    return Range(float(low), float(high), opening == "[", closing == "]", tuple(float(v) for v in special))


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def opt(default, help: str, choices: tuple | None = None, range: str | None = None):
    """A config field with its description, and its allowed values or (for a number) its valid range,
    written as an interval with optional special values: '[1, inf)', '(0, 1]', '[0, 1] or -1'."""
    return field(default=default, metadata={"help": help, "choices": choices,
                                            "range": parse_range(range) if range else None})


@dataclass
class TrainConfig:
    """Fields shared by every task: data, model, optimisation, engine and run folder."""

    # what to train on, and with what
    data: str = opt("", "data set: an embedded name, a folder, or a data file (paths are relative to it)")
    model: str = opt("", "architecture name (`foveal models TASK` lists them)")
    imgsz: int = opt(0, "input size in pixels (0: the data set's natural size, 224 for folders)", range="[0, inf)")
    pretrained: str = opt("", "local weights file (.safetensors, or a torchvision .pth) to start from")
    freeze: str = opt("", "freeze 'backbone' or the first N top-level blocks ('3')")
    unfreeze_epoch: int = opt(0, "unfreeze everything after this many epochs (0: never)", range="[0, inf)")
    backbone_lr: float = opt(1.0, "learning-rate multiplier for all but the head", range="[0, inf)")
    # optimisation
    epochs: int = opt(10, "number of training epochs", range="[1, inf)")
    batch: int = opt(64, "batch size (per process when run with torchrun)", range="[1, inf)")
    optimizer: str = opt("adamw", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = opt(1e-3, "initial learning rate", range="(0, inf)")
    lrf: float = opt(0.01, "final learning rate as a fraction of lr (cosine)", range="(0, 1]")
    momentum: float = opt(0.9, "SGD momentum / Adam beta1", range="[0, 1)")
    weight_decay: float = opt(5e-4, "weight decay (not applied to biases and norm layers)", range="[0, inf)")
    scheduler: str = opt("cosine", "learning-rate schedule", ("cosine", "step", "onecycle", "constant"))
    step_epochs: int = opt(10, "step schedule: epochs between decays", range="[1, inf)")
    gamma: float = opt(0.1, "step schedule: decay factor", range="(0, 1]")
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (fractions allowed)", range="[0, inf)")
    label_smoothing: float = opt(0.0, "label smoothing for the cross-entropy loss", range="[0, 1)")
    clip_grad: float = opt(0.0, "clip the gradient norm to this value (0: off)", range="[0, inf)")
    ema: bool = opt(False, "keep an exponential moving average of the weights and evaluate it")
    ema_decay: float = opt(0.9999, "EMA decay (ramped up over the first updates)", range="[0, 1)")
    patience: int = opt(0, "stop after this many epochs without a better val metric (0: off)", range="[0, inf)")
    # engine
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: str = opt("auto", "mixed precision: auto (bf16/fp16 on GPU, bf16 on CPUs with native bf16)",
                   ("auto", "off", "bf16", "fp16"))
    channels_last: bool = opt(True, "channels_last memory format (about 1.2x faster conv training on CPU)")
    threads: int = opt(0, "CPU threads for torch (0: every available core)", range="[0, inf)")
    workers: int = opt(-1, "data-loading processes (-1: auto, 0 for in-memory data)", range="[-1, inf)")
    seed: int = opt(0, "random seed; the same seed gives the same run", range="[0, 4294967295]")
    deterministic: bool = opt(True, "make GPU kernels deterministic too (slower on some models)")
    strict: bool = opt(False, "stop on the first unreadable image or bad label instead of skipping it with one counted warning")
    val_fraction: float = opt(0.2, "share held out for validation when the data has no val split", range="(0, 1)")
    # run folder
    project: str = opt("runs", "folder that holds runs/<task>/<name>")
    name: str = opt("", "run name (default: exp, exp2, ...)")
    exist_ok: bool = opt(False, "write into an existing run folder of the same name")
    resume: str = opt("", "run folder (or its train_state.pt) to continue; `epochs=` may extend it")
    plots: bool = opt(True, "draw the report's plots and image grids (false: its tables only, seconds faster)")
    save_period: int = opt(0, "also keep epochN.safetensors every N epochs (0: off)", range="[0, inf)")
    # evaluation and prediction
    weights: str = opt("", "trained weights (.safetensors, or .onnx from export) for val, predict and export")
    vid_stride: int = opt(1, "predict: run on every Nth frame of a video or camera", range="[1, inf)")
    source: str = opt("", "predict: an image, a folder, a glob, a video or a camera index (from Python also numpy "
                          "arrays, PIL images, torch tensors (3, H, W) in [0, 1], or a list of them)")
    bgr: bool = opt(False, "predict from Python: numpy arrays given as source are BGR (OpenCV's order), not RGB")
    split: str = opt("val", "val: which split to evaluate", ("train", "val", "test"))
    format: str = opt("onnx", "export: the file format", ("onnx",))
    dynamic: bool = opt(False, "export: any batch size and any input size (multiples of 32) instead of (1, imgsz)")
    nms: bool = opt(True, "export: NMS inside yolo graphs, one (B, max_det, 6) output of x1, y1, x2, y2, score, class "
                          "rows at the model's conf and iou (yolo_*-seg: 6 + k columns, the mask coefficients, and "
                          "the prototypes) (false: boxes and class scores, foveal's NMS after them)")
    half: bool = opt(False, "export: an fp16 graph (needs device=cuda)")
    simplify: bool = opt(False, "export: simplify the graph with onnxslim")
    int8: bool = opt(False, "export: an int8 graph for the CPU (onnxruntime static quantization, calibrated on 32 "
                            "training images); benchmark: also an onnx-int8 row")
    runs: int = opt(50, "benchmark: timed batch-1 runs of each format, after a warm-up", range="[1, inf)")
    num_classes: int = opt(0, "info: head size when neither weights nor data say (0: ImageNet's 1000, COCO's 80)",
                           range="[0, inf)")
    rf: bool = opt(False, "info: add each conv-path layer's receptive field and jump (input pixels between neighbouring outputs)")
    memory: bool = opt(False, "info: add each layer's activation memory and a training-memory estimate for batch= and optimizer=")
    layers: str = opt("auto", "features: layer names, comma-separated (auto: the end of each stage)")
    method: str = opt("gradcam", "explain: the saliency method",
                      ("gradcam", "gradcam++", "scorecam", "eigencam", "saliency"))
    target: str = opt("auto", "explain: what to explain: a class name or index (auto: top-1), or for detect a "
                              "detection's index (auto: the best)")
    target_layer: str = opt("auto", "explain: the layer whose activations the CAM weighs (auto: the last conv stage)")
    verbose: bool = opt(True, "print progress and results")
    debug: bool = opt(False, "on an unexpected error, print the full traceback instead of writing it to error.log")
    cfg: str = opt("", "YAML file with any of these keys; key=value arguments override it")


def fields_of(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(cls)}


def _base_type(tp):
    """int for `int`, str for `str | None`: the one concrete type a field holds."""
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    return tp


def convert(key: str, value, tp):
    """Turn a CLI string or YAML value into the field's type, or raise a one-line FovealError."""
    tp = _base_type(tp)
    if tp is bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise FovealError(f"{key}: expected true or false, got '{value}'")
    if tp is int:
        if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
            raise FovealError(f"{key}: expected an integer, got '{value}'")
        try:
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        except (TypeError, ValueError):
            raise FovealError(f"{key}: expected an integer, got '{value}'") from None
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise FovealError(f"{key}: expected a number, got '{value}'") from None
    return "" if value is None else str(value)


def build_config(cls, overrides: dict | None = None):
    """Defaults of `cls`, then the YAML file named by `cfg`, then `overrides` (validated)."""
    overrides = dict(overrides or {})
    values = {}
    if overrides.get("cfg"):
        values.update(read_yaml_config(overrides["cfg"]))
    values.update(overrides)
    known = fields_of(cls)
    hints = typing.get_type_hints(cls)
    checked = {}
    for key, value in values.items():
        if key not in known:
            raise FovealError(f"unknown key '{key}'{did_you_mean(key, known)}; valid keys: "
                              + ", ".join(known))
        checked[key] = convert(key, value, hints[key])
        choices = known[key].metadata.get("choices")
        if choices and checked[key] not in choices:
            raise FovealError(f"{key}: expected one of {', '.join(map(str, choices))}, got '{value}'")
        valid = valid_range(cls, key)
        if valid and checked[key] not in valid:
            raise FovealError(f"{key}: {value} is out of range; valid: {valid}")
    return cls(**checked)


def valid_range(cls, key: str) -> Range | None:
    """The range declared for `key` by `cls`, or by the base class whose field `cls` only re-defaults
    (DetectConfig's `epochs` keeps TrainConfig's range): each range is written once."""
    for klass in cls.__mro__:
        declared = fields_of(klass).get(key) if dataclasses.is_dataclass(klass) else None
        if declared and declared.metadata.get("range"):
            return declared.metadata["range"]
    return None


def read_yaml_config(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FovealError(f"cfg: no such file: {p}")
    try:
        data = yaml.safe_load(read_text(p)) or {}
    except yaml.YAMLError as e:
        raise FovealError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise FovealError(f"{p}: expected a mapping of key: value")
    data.pop("cfg", None)
    return data


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def save_config(cfg, path: Path):
    write_text(path, yaml.safe_dump(config_dict(cfg), sort_keys=False))


def describe(cls) -> str:
    """The table of keys: name, type, default, description, and the choices or valid range."""
    hints = typing.get_type_hints(cls)
    keys = fields_of(cls)
    name_width = max(16, *map(len, keys))
    default_width = max(10, *(len(repr(f.default)) for f in keys.values()))
    lines = []
    for name, f in keys.items():
        tp = _base_type(hints[name]).__name__
        choices, valid = f.metadata.get("choices"), valid_range(cls, name)
        extra = f" [{'|'.join(map(str, choices))}]" if choices else f" (valid: {valid})" if valid else ""
        default = repr(f.default)
        lines.append(f"  {name:<{name_width}} {tp:<6} {default:<{default_width}} {f.metadata.get('help', '')}{extra}")
    return "\n".join(lines)
