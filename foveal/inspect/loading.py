"""The model `features` and `explain` look into, and the images they show it.

Trained weights are loaded as `predict` loads them; without weights, cfg.model is built with random
weights as `info` builds it (its classes are then just "0", "1", ...). Each image is prepared by the
task's own Predictor (Predictor.prepare), so the model sees exactly what it sees in predict.
"""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..data.images import resolve_source
from ..data.stream import image_frames, is_stream
from ..engine.device import configure_cpu, select_device
from ..engine.modes import trained_task, use_inference_options
from ..errors import FovealError
from ..registry import create_model
from ..engine.contract import Predictor, Task


@dataclass
class InspectedModel:
    task: Task
    model: nn.Module  # eval mode, on `device`
    predictor: Predictor  # makes the model input of each image (prepare)
    meta: dict  # the weights' metadata (or what a random model would record: model, classes, imgsz)
    device: torch.device
    trained: bool  # False: random weights

    @property
    def classes(self) -> list[str]:
        return self.meta["classes"]

    def describe(self) -> str:
        where = "trained weights" if self.trained else "random weights (name weights= for a trained model)"
        return f"{self.meta['model']} at {self.meta['imgsz']} px, {len(self.classes)} classes, {where}"


def inspected_model(task_class, cfg, mode: str) -> InspectedModel:
    """cfg.weights loaded as predict loads them (its conf, iou, ...), or cfg.model with random weights."""
    if Path(cfg.weights).suffix == ".onnx":
        raise FovealError(f"weights: {mode} needs the .safetensors weights: an exported .onnx graph has no layers "
                          "to look into")
    if cfg.weights:
        task, model, meta, device = trained_task(task_class, cfg, "predict")
        trained = True
    else:
        device = select_device(cfg.device)
        configure_cpu(cfg.threads)
        name, kwargs, imgsz = task_class.model_for_info(cfg)
        if "imgsz" in kwargs:  # models whose shape depends on the input size are built for the size asked
            kwargs["imgsz"] = imgsz
        classes = [str(k) for k in range(max(kwargs.get("num_classes", 2), 2))]  # 1 output: a sigmoid head's 2
        meta = {"task": task_class.name, "model": name, "model_kwargs": kwargs, "imgsz": imgsz, "classes": classes}
        task = task_class.trained(cfg, meta)
        torch.manual_seed(cfg.seed)  # the same random weights for the same seed
        model = create_model(name, task_class.name, **kwargs).to(device).eval()
        use_inference_options(task, model, "predict")
        trained = False
    predictor = task.predictor(model, device)
    return InspectedModel(task, model, predictor, meta, device, trained)


def source_frames(source: str, mode: str):
    """The images of a file, folder or glob (as predict reads them); videos and cameras are refused."""
    if not source:
        raise FovealError(f"source: name an image, a folder or a glob for {mode}, e.g. source=img.png")
    if is_stream(source):
        raise FovealError(f"source: {mode} looks at images (a file, a folder or a glob), not videos or cameras")
    return image_frames(resolve_source(source))

