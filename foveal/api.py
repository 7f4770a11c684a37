"""The Python API: the same task, mode and key names as the command line.

    import foveal
    result = foveal.train("classify", data="digits", model="simple_cnn", epochs=5)
    foveal.val(weights=result.best)                     # the task is in the weights
    for r in foveal.predict(weights=result.best, source=pixels):   # paths, numpy, PIL, torch, lists
        print(r.probs.top1, r.speed); r.save("shown.png")

predict returns one Results per image (engine/results.py), writes nothing and prints nothing unless
asked (save=True, verbose=True); with stream=True it is a generator, for videos and cameras.
"""

import importlib
import os

from .config import build_config, read_yaml_config
from .engine import modes
from .engine.benchmark import benchmark
from .engine.checkpoint import weights_task
from .engine.tracking import track
from .engine.trainer import RunResult, fit
from .data.stream import array_frames
from .errors import FovealError, did_you_mean
from .inspect.explain import explain
from .inspect.features import features
from .inspect.info import info as info_mode

TASKS = {"classify": "foveal.tasks.classify.task", "detect": "foveal.tasks.detect.task",
         "segment": "foveal.tasks.segment.semantic", "pose": "foveal.tasks.pose.task",
         "restore": "foveal.tasks.restore.task", "forecast": "foveal.tasks.forecast.task"}
# every task has these; a task module may add more (MODES)
MODES = ("train", "val", "predict", "info", "export", "benchmark")
OTHER_MODES = ("track", "features", "explain", "convert")  # of some tasks only (their MODES)
ENGINE_MODES = {"val": modes.validate, "predict": modes.predict, "track": track, "info": info_mode,
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


def given_keys(overrides: dict) -> set[str]:
    """The keys the caller set: as arguments, or in the cfg= file."""
    return set(overrides) | (set(read_yaml_config(overrides["cfg"])) if overrides.get("cfg") else set())


def task_of(task: str | None, mode: str, overrides: dict) -> str:
    """`task`, or when it is not given, the task the weights were trained for (read from their metadata)."""
    if task is not None:
        return task
    if mode == "train":
        raise FovealError(f"train: name the task, e.g. foveal classify train data=... (tasks: {', '.join(TASKS)})")
    weights = overrides.get("weights") or (read_yaml_config(overrides["cfg"]).get("weights") if overrides.get("cfg") else "")
    if not weights:
        raise FovealError(f"{mode}: name the weights (weights=...), whose metadata says the task, or the task: "
                          f"foveal TASK {mode} ... (tasks: {', '.join(TASKS)})")
    return weights_task(weights)


def train(task: str, **overrides) -> RunResult:
    return fit(task_class(task), config(task, **overrides), given=given_keys(overrides))


def val(task: str | None = None, **overrides):
    task = task_of(task, "val", overrides)
    return modes.validate(task_class(task), config(task, **overrides))


def predict(task: str | None = None, stream: bool = False, **overrides):
    """One Results per image or frame of `source` (a path, folder, glob, video or camera as on the command
    line, or numpy arrays, PIL images, torch tensors, or a list of them): a list, or with stream=True a
    generator that runs the model as it is iterated. Nothing is written (no run folder) unless save=True
    (or save_txt, save_crop), nothing printed unless verbose=True."""
    task = task_of(task, "predict", overrides)
    source = overrides.get("source")
    in_memory = source is not None and not isinstance(source, (str, os.PathLike))
    quiet = {key: False for key in ("save", "verbose") if key not in given_keys(overrides)}  # a cfg= file's hold
    cfg = config(task, **{**quiet, **overrides, **({"source": ""} if in_memory else {})})
    frames = array_frames(source, cfg.bgr) if in_memory else None
    writes = any(getattr(cfg, key, False) for key in ("save", "save_txt", "save_crop"))
    results = modes.predict_results(task_class(task), cfg, frames, writes)
    return results if stream else list(results)


def info(task: str | None = None, **overrides):
    task = task_of(task, "info", overrides)
    return info_mode(task_class(task), config(task, **overrides))


def run(task: str | None, mode: str, **overrides):
    """Dispatch `foveal TASK MODE key=value ...` (and `foveal MODE weights=...`: task None, read from the weights)."""
    task = task_of(task, mode, overrides)
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
