"""The model registry: one dict and one decorator, for the models of every task."""

from dataclasses import dataclass
from typing import Callable

from .errors import FovealError, did_you_mean


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str  # "classify", "detect", "segment", ...
    builder: Callable  # builder(num_classes=..., **kwargs) -> nn.Module
    family: str  # "foveal" for our own models, "torchvision", ...
    kind: str = ""  # a variant of the task's contract: "semantic" or "instance" for segment models,
    # "fixed_size" for detectors that resize every input to their own square (SSD)


_MODELS: dict[str, ModelEntry] = {}


def register_model(task: str, name: str | None = None, family: str = "foveal", kind: str = ""):
    """Decorator that registers `builder` under `name` (default: the function's name)."""

    def wrap(builder):
        key = name or builder.__name__
        if key in _MODELS:
            raise ValueError(f"model '{key}' is registered twice")
        _MODELS[key] = ModelEntry(key, task, builder, family, kind)
        return builder

    return wrap


def _load_all():
    from . import models  # noqa: F401  (importing registers every model)


def get_model_entry(name: str, task: str | None = None) -> ModelEntry:
    _load_all()
    entry = _MODELS.get(name)
    if entry is None or (task and entry.task != task):
        names = list_models(task)
        raise FovealError(f"unknown model '{name}'{did_you_mean(name, names)}; "
                          f"`foveal models{' ' + task if task else ''}` lists the {len(names)} available")
    return entry


def create_model(name: str, task: str | None = None, **kwargs):
    """Build a registered model with freshly initialised weights, e.g. create_model('resnet18', num_classes=10)."""
    return get_model_entry(name, task).builder(**kwargs)


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models, of one task or of all."""
    _load_all()
    return sorted(k for k, e in _MODELS.items() if task is None or e.task == task)
