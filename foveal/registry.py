"""The model registry: one dict and one decorator, for the models of every task.

Models are keyed by (task, name), so one architecture can serve two tasks under its own name ("unet"
segments and restores). Asked without a task, a name is found when exactly one task has it.
"""

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Callable, Mapping

from .errors import FovealError, did_you_mean


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str  # "classify", "detect", "segment", "restore", ...
    builder: Callable  # builder(num_classes=..., **kwargs) -> nn.Module (restore: builder(channels=, scale=, ...))
    family: str  # "foveal" for our own models, "torchvision", ...
    kind: str = ""  # a variant of the task's contract: "semantic" or "instance" for segment models,
    # "fixed_size" for detectors that resize every input to their own square (SSD), "landmark" for pose
    # models that find the one object of an image (hourglass)
    defaults: Mapping = field(default_factory=lambda: MappingProxyType({}))  # training keys the model wants
    # unless the user sets them, where its task's defaults suit its other models (yolo-seg in segment)


_MODELS: dict[tuple[str, str], ModelEntry] = {}  # (task, name) -> entry


def register_model(task: str, name: str | None = None, family: str = "foveal", kind: str = "",
                   defaults: dict | None = None):
    """Decorator that registers `builder` under `name` (default: the function's name) for `task`;
    `defaults`: config values the model trains with unless the user sets them."""

    def wrap(builder):
        key = name or builder.__name__
        if (task, key) in _MODELS:
            raise ValueError(f"model '{key}' is registered twice for task '{task}'")
        _MODELS[task, key] = ModelEntry(key, task, builder, family, kind, MappingProxyType(dict(defaults or {})))
        return builder

    return wrap


def _load_all():
    from . import models  # noqa: F401  (importing registers every model)


def get_model_entry(name: str, task: str | None = None) -> ModelEntry:
    """The entry of `task`'s model `name`; without a task, of the one task that has that name."""
    _load_all()
    if task:
        entry = _MODELS.get((task, name))
    else:
        matches = [e for e in _MODELS.values() if e.name == name]
        if len(matches) > 1:
            tasks = sorted(e.task for e in matches)
            raise FovealError(f"model '{name}' exists for the tasks {', '.join(tasks)}; name the task, "
                              f"e.g. create_model('{name}', '{tasks[0]}')")
        entry = matches[0] if matches else None
    if entry is None:
        names = list_models(task)
        raise FovealError(f"unknown model '{name}'{did_you_mean(name, names)}; "
                          f"`foveal models{' ' + task if task else ''}` lists the {len(names)} available")
    return entry


def create_model(name: str, task: str | None = None, **kwargs):
    """Build a registered model with freshly initialised weights, e.g. create_model('resnet18', num_classes=10)."""
    return get_model_entry(name, task).builder(**kwargs)


def list_models(task: str | None = None) -> list[str]:
    """Sorted names of the registered models, of one task or of all (a name two tasks share listed once)."""
    _load_all()
    return sorted({name for model_task, name in _MODELS if task is None or model_task == task})
