"""Weights as safetensors with JSON metadata, and the resume state, both written atomically.

`*.safetensors` holds only tensors plus a JSON string under the key "foveal" (architecture,
classes, image size, normalisation, config, epoch, metric): portable, and never unpickled.
`train_state.pt` holds what resume needs (optimizer, scheduler, EMA, history, RNG); it is read
with `torch.load(weights_only=True)`, which refuses anything but tensors and plain containers.
"""

import json
import pickle
import re
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from ..errors import FovealError
from ..files import atomic_write

FORMAT_VERSION = 1
TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")  # torch.save's usual names


def _plain_tensors(state: dict) -> dict:
    """Contiguous CPU tensors; a tensor sharing memory with an earlier one is cloned (safetensors refuses aliasing)."""
    seen, out = set(), {}
    for key, value in state.items():
        t = value.detach().cpu().contiguous()
        ptr = t.untyped_storage().data_ptr() if t.numel() else None
        if ptr in seen:
            t = t.clone()
        seen.add(ptr)
        out[key] = t
    return out


def save_weights(path: Path, state_dict: dict, meta: dict):
    meta = {"format_version": FORMAT_VERSION, **meta}
    tensors = _plain_tensors(state_dict)
    atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata={"foveal": json.dumps(meta)}))


def read_weights_meta(path: Path) -> dict:
    """The JSON metadata of a foveal .safetensors file ({} for a plain safetensors file)."""
    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get("foveal")
    return json.loads(raw) if raw else {}


def load_weights(path) -> tuple[dict, dict]:
    """(state_dict, metadata) from a .safetensors file, or from a .pth/.pt state dict (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise FovealError(f"weights: no such file: {path}")
    if path.suffix == ".safetensors":
        try:
            state, meta = load_file(str(path)), read_weights_meta(path)
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as e:
            raise FovealError(f"{path}: not a valid safetensors file ({e})") from None
        if not isinstance(meta, dict):
            raise FovealError(f"{path}: its foveal metadata is not a JSON object of key: value")
        return state, meta
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FovealError(f"{path}: cannot be read as a weights-only PyTorch state dict ({torch_load_problem(e)})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise FovealError(f"{path}: expected a state dict of tensors")
    return state, {}


def torch_load_problem(error: Exception) -> str:
    """What torch.load(weights_only=True) refused, in foveal's words: torch's own message is many lines with
    terminal colour codes and advises unpickling anyway, which could run any code the file holds."""
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
    if isinstance(error, pickle.UnpicklingError) and found:
        return (f"it holds a pickled {found.group(1)}, and foveal unpickles nothing but tensors and plain "
                f"containers; save the model's state_dict() alone")
    return re.sub(r"\x1b\[[0-9;]*m", "", str(error)).strip().splitlines()[0] if str(error).strip() else type(error).__name__


def save_train_state(path: Path, state: dict):
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_train_state(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise FovealError(f"{path}: cannot read the resume state ({torch_load_problem(e)})") from None


def load_state(model: torch.nn.Module, state: dict, strict: bool = True):
    """model.load_state_dict(state), giving the state the per-module versions a safetensors file drops.

    Some modules (torchvision's MNASNet) refuse a state dict without them.
    """
    if getattr(state, "_metadata", None) is None:
        from collections import OrderedDict

        state = OrderedDict(state)
        state._metadata = model.state_dict()._metadata
    return model.load_state_dict(state, strict=strict)


# What every trained foveal weights file records, and val, predict and info need to rebuild the model.
TRAINED_META = {"task": str, "model": str, "model_kwargs": dict, "classes": list, "imgsz": int}


def check_trained_meta(weights, meta: dict, task: str):
    """Refuse metadata that is not a complete foveal `task` record, naming the file and what is wrong."""
    if not meta or meta.get("task", task) != task:  # a missing task is named below, with the other gaps
        raise FovealError(f"weights: {weights} holds no foveal {task} weights (task: {meta.get('task', 'unknown')})")
    missing = [key for key in TRAINED_META if key not in meta]
    if missing:
        raise FovealError(f"weights: {weights}: the foveal metadata lacks {', '.join(missing)} "
                          "(written by another tool, or edited)")
    mistyped = [f"{key} (not a {kind.__name__})" for key, kind in TRAINED_META.items()
                if not isinstance(meta[key], kind)]
    if mistyped:
        raise FovealError(f"weights: {weights}: the foveal metadata has a malformed {', '.join(mistyped)}")


def require_weights(weights, task: str = "detect"):
    """A one-line error when no weights file is named (its example: a `task` run's)."""
    if not weights:
        raise FovealError(f"weights: name a trained weights file, e.g. weights=runs/{task}/exp/best.safetensors")


def file_meta(weights, task: str = "detect") -> dict:
    """The foveal metadata of a weights file (.safetensors or .onnx; {} when it has none), unchecked."""
    require_weights(weights, task)
    if not Path(weights).is_file():
        raise FovealError(f"weights: no such file: {weights}")
    if Path(weights).suffix == ".onnx":
        from .onnx_runtime import read_onnx_meta

        return read_onnx_meta(weights)
    try:
        return read_weights_meta(weights)
    except (SafetensorError, OSError, ValueError) as e:
        if Path(weights).suffix in TORCH_SUFFIXES:  # a state dict has no metadata to rebuild a model from
            raise FovealError(f"weights: {weights} is not a foveal weights file (.safetensors or .onnx, with the "
                              f"task, model and classes); a PyTorch state dict is for pretrained=") from None
        raise FovealError(f"{weights}: not a valid safetensors file ({e})") from None


def trained_meta(weights, task: str) -> dict:
    """The checked metadata of a foveal `task` weights file (.safetensors or .onnx), without its tensors."""
    meta = file_meta(weights, task)
    check_trained_meta(weights, meta, task)
    return meta


def weights_task(weights) -> str:
    """The task a foveal weights file was trained for (serve picks the task from it)."""
    task = file_meta(weights).get("task")
    if not isinstance(task, str) or not task:
        raise FovealError(f"weights: {weights} holds no foveal weights (no task in its metadata)")
    return task


def load_trained(weights, task: str, device: torch.device, **model_kwargs):
    """(model in eval mode on `device`, metadata) rebuilt from a foveal weights file of `task`."""
    from ..registry import create_model

    if Path(str(weights)).suffix == ".onnx":  # an exported graph, run by onnxruntime in the model's place
        from .onnx_runtime import load_onnx

        meta = trained_meta(weights, task)  # the file's checks, once: there, readable, a complete record
        return load_onnx(weights, meta, device), meta
    require_weights(weights, task)
    state, meta = load_weights(weights)
    check_trained_meta(weights, meta, task)
    model = create_model(meta["model"], task, **meta["model_kwargs"], **model_kwargs)
    try:
        load_state(model, state)
    except RuntimeError as e:
        detail = next((line.strip() for line in str(e).splitlines()[1:] if line.strip()), str(e))
        raise FovealError(f"weights: {weights} does not fit {meta['model']}: {detail}") from None
    model.to(device)
    if meta.get("config", {}).get("channels_last"):  # evaluate in the layout it was trained and scored in
        model.to(memory_format=torch.channels_last)
    return model.eval(), meta
