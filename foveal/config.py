"""Typed run configuration: defaults in code, then a YAML file (`cfg=`), then `key=value` on top.

Every task has one dataclass; each field carries a one-line description (`foveal TASK help`
prints the table). Unknown keys and badly typed values are a `FovealError` naming the key.
"""

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import FovealError, did_you_mean
from .files import write_text


def opt(default, help: str, choices: tuple | None = None):
    """A config field with its description (and allowed values, checked on load)."""
    return field(default=default, metadata={"help": help, "choices": choices})


@dataclass
class TrainConfig:
    """Fields shared by every task: data, model, optimisation, engine and run folder."""

    # what to train on, and with what
    data: str = opt("", "data set: an embedded name, a folder, or a data file (paths are relative to it)")
    model: str = opt("", "architecture name (`foveal models TASK` lists them)")
    imgsz: int = opt(0, "input size in pixels (0: the data set's natural size, 224 for folders)")
    pretrained: str = opt("", "local weights file (.safetensors, or a torchvision .pth) to start from")
    freeze: str = opt("", "freeze 'backbone' or the first N top-level blocks ('3')")
    unfreeze_epoch: int = opt(0, "unfreeze everything after this many epochs (0: never)")
    backbone_lr: float = opt(1.0, "learning-rate multiplier for all but the head")
    # optimisation
    epochs: int = opt(10, "number of training epochs")
    batch: int = opt(64, "batch size (per process when run with torchrun)")
    optimizer: str = opt("adamw", "optimizer", ("sgd", "adam", "adamw"))
    lr: float = opt(1e-3, "initial learning rate")
    lrf: float = opt(0.01, "final learning rate as a fraction of lr (cosine)")
    momentum: float = opt(0.9, "SGD momentum / Adam beta1")
    weight_decay: float = opt(5e-4, "weight decay (not applied to biases and norm layers)")
    scheduler: str = opt("cosine", "learning-rate schedule", ("cosine", "step", "onecycle", "constant"))
    step_epochs: int = opt(10, "step schedule: epochs between decays")
    gamma: float = opt(0.1, "step schedule: decay factor")
    warmup_epochs: float = opt(1.0, "linear warm-up length in epochs (fractions allowed)")
    label_smoothing: float = opt(0.0, "label smoothing for the cross-entropy loss")
    clip_grad: float = opt(0.0, "clip the gradient norm to this value (0: off)")
    ema: bool = opt(False, "keep an exponential moving average of the weights and evaluate it")
    ema_decay: float = opt(0.9999, "EMA decay (ramped up over the first updates)")
    patience: int = opt(0, "stop after this many epochs without a better val metric (0: off)")
    # engine
    device: str = opt("auto", "auto, cpu, cuda, cuda:N or mps")
    amp: str = opt("auto", "mixed precision: auto (bf16/fp16 on GPU, bf16 on CPUs with native bf16)",
                   ("auto", "off", "bf16", "fp16"))
    channels_last: bool = opt(True, "channels_last memory format (about 1.2x faster conv training on CPU)")
    threads: int = opt(0, "CPU threads for torch (0: every available core)")
    workers: int = opt(-1, "data-loading processes (-1: auto, 0 for in-memory data)")
    seed: int = opt(0, "random seed; the same seed gives the same run")
    deterministic: bool = opt(True, "make GPU kernels deterministic too (slower on some models)")
    strict: bool = opt(False, "stop on a corrupt image instead of skipping it with a warning")
    val_fraction: float = opt(0.2, "share held out for validation when the data has no val split")
    # run folder
    project: str = opt("runs", "folder that holds runs/<task>/<name>")
    name: str = opt("", "run name (default: exp, exp2, ...)")
    exist_ok: bool = opt(False, "write into an existing run folder of the same name")
    resume: str = opt("", "run folder (or its train_state.pt) to continue; `epochs=` may extend it")
    save_period: int = opt(0, "also keep epochN.safetensors every N epochs (0: off)")
    # evaluation and prediction
    weights: str = opt("", "trained weights (.safetensors) for val and predict")
    source: str = opt("", "predict: an image, a folder or a glob")
    split: str = opt("val", "val: which split to evaluate", ("train", "val", "test"))
    num_classes: int = opt(0, "info: head size when neither weights nor data say (0: ImageNet's 1000, COCO's 80)")
    verbose: bool = opt(True, "print progress and results")
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
            raise FovealError(f"{key}: expected one of {', '.join(choices)}, got '{value}'")
    return cls(**checked)


def read_yaml_config(path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise FovealError(f"cfg: no such file: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
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
    """The table of keys: name, type, default, description."""
    hints = typing.get_type_hints(cls)
    lines = []
    for name, f in fields_of(cls).items():
        tp = _base_type(hints[name]).__name__
        choices = f.metadata.get("choices")
        extra = f" [{'|'.join(choices)}]" if choices else ""
        lines.append(f"  {name:<16} {tp:<6} {f.default!r:<10} {f.metadata.get('help', '')}{extra}")
    return "\n".join(lines)
