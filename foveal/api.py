"""The Python API: the same task, mode and key names as the command line.

    import foveal
    result = foveal.train("classify", data="digits", model="simple_cnn", epochs=5)
    foveal.val("classify", weights=result.best)
    foveal.classify.predict(weights=result.best, source="img.png")
"""

import importlib

from .config import build_config, read_yaml_config
from .engine import modes
from .engine.benchmark import benchmark
from .engine.trainer import RunResult, fit
from .errors import FovealError, did_you_mean
from .inspect.explain import explain
from .inspect.features import features

TASKS = {"classify": "foveal.tasks.classify", "detect": "foveal.tasks.detect", "segment": "foveal.tasks.segment",
         "restore": "foveal.tasks.restore", "forecast": "foveal.tasks.forecast"}
# every task has these; a task module may add more (MODES)
MODES = ("train", "val", "predict", "info", "export", "benchmark")
ENGINE_MODES = {"val": modes.validate, "predict": modes.predict, "info": modes.info,
                "export": modes.export, "benchmark": benchmark,  # the same for every task
                "features": features, "explain": explain}  # for the tasks whose MODES name them


def task_module(task: str):
    if task not in TASKS:
        raise FovealError(f"unknown task '{task}'{did_you_mean(task, TASKS)}; tasks: {', '.join(TASKS)}")
    return importlib.import_module(TASKS[task])


def task_class(task: str):
    module = task_module(task)
    return next(v for v in vars(module).values()
                if isinstance(v, type) and getattr(v, "name", None) == task and hasattr(v, "fitness"))


def config(task: str, **overrides):
    """The task's validated config with `overrides` (key=value pairs, and/or cfg='file.yaml')."""
    return build_config(task_class(task).Config, overrides)


def train(task: str, **overrides) -> RunResult:
    given = set(overrides) | (set(read_yaml_config(overrides["cfg"])) if overrides.get("cfg") else set())
    return fit(task_class(task), config(task, **overrides), given=given)


def val(task: str, **overrides):
    return modes.validate(task_class(task), config(task, **overrides))


def predict(task: str, **overrides):
    return modes.predict(task_class(task), config(task, **overrides))


def info(task: str, **overrides):
    return modes.info(task_class(task), config(task, **overrides))


def run(task: str, mode: str, **overrides):
    """Dispatch `foveal TASK MODE key=value ...`."""
    task_modes = task_module(task).MODES
    if mode not in task_modes:
        raise FovealError(f"unknown mode '{mode}'{did_you_mean(mode, task_modes)}; modes of {task}: {', '.join(task_modes)}")
    if mode == "train":
        return train(task, **overrides)
    if mode in ENGINE_MODES:
        return ENGINE_MODES[mode](task_class(task), config(task, **overrides))
    return getattr(task_module(task), mode)(config(task, **overrides))


class TaskAPI:
    """foveal.classify.train(...) == foveal.train("classify", ...)."""

    def __init__(self, task: str):
        self.task = task

    def train(self, **overrides) -> RunResult:
        return train(self.task, **overrides)

    def val(self, **overrides):
        return val(self.task, **overrides)

    def predict(self, **overrides):
        return predict(self.task, **overrides)

    def info(self, **overrides):
        return info(self.task, **overrides)

    def __getattr__(self, mode: str):  # task-specific modes, e.g. foveal.detect.convert(src=..., dst=...)
        if mode.startswith("_"):
            raise AttributeError(mode)
        return lambda **overrides: run(self.task, mode, **overrides)
