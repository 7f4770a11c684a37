"""ONNX: export trained weights of any task, and run an .onnx file in `val` and `predict` in the model's place.

Export traces the eval model (BatchNorms folded where the task folds them) with torch.onnx.export, the
torch.export-based exporter, at a fixed (1, 3, imgsz, imgsz) input or, with dynamic=true, any batch and
any size in multiples of 32. A model whose eval output is not plain tensors says what to export with
`export_module()` (YOLO: its decoded boxes and class scores; NMS stays in foveal's post-processing, the
same code as PyTorch's). foveal's weights metadata goes into the file's metadata_props["foveal"], so an
.onnx file is as self-describing as a .safetensors one.

Running one: onnxruntime on the CPU (CUDA where its provider and the device are there), with torch's
thread count. A model with `run_exported(fn)` keeps its own post-processing around the exported graph
(YOLO); any other is replaced by OnnxModel, which returns the graph's single output as a tensor.
"""

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import FovealError
from ..files import write_bytes

META_KEY = "foveal"  # metadata_props key holding the weights metadata as JSON
STRIDE = 32  # dynamic sizes are multiples of it (every model here downsamples by at most 32)


def missing_runtime(what: str) -> FovealError:
    return FovealError(f"{what} needs the ONNX packages: pip install 'foveal[deploy]' (onnx, onnxruntime, onnxscript)")


def export_onnx(model: nn.Module, meta: dict, path: Path, imgsz: int, dynamic: bool) -> Path:
    """Write `model` (eval mode, on the CPU) as ONNX to `path` with `meta` in its metadata; returns path."""
    try:
        import onnx  # noqa: F401  (the exporter needs onnx and onnxscript)
        import onnxscript  # noqa: F401
    except ImportError:
        raise missing_runtime("export format=onnx") from None
    wrapped = hasattr(model, "export_module")
    module = (model.export_module() if wrapped else model).eval()
    # dynamic: a size of one is specialised by torch.export, so the example has 2 images and 2+ strides a side
    side = max(imgsz, 2 * STRIDE) if dynamic else imgsz
    example = torch.rand(2 if dynamic else 1, 3, side, side)
    shapes = None
    if dynamic:
        rows, cols = torch.export.Dim("rows", max=256), torch.export.Dim("cols", max=256)  # in strides
        shapes = ({0: torch.export.Dim("batch", max=1024), 2: STRIDE * rows, 3: STRIDE * cols},)  # by position: forward's name for it varies
    try:
        program = torch.onnx.export(module, (example.contiguous(memory_format=torch.channels_last),),
                                    dynamo=True, external_data=False, dynamic_shapes=shapes, verbose=False,
                                    input_names=["images"])
    except Exception as e:  # the exporter wraps the cause (an operator, a guard): its first line says it
        lines = str(e.__cause__ or e).strip().splitlines() or [type(e).__name__]
        raise FovealError(f"export: {meta['model']} cannot be exported to ONNX ({lines[0][:300]})") from None
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps({**meta, "imgsz": imgsz, "onnx": {"dynamic": dynamic, "wrapped": wrapped}})
    write_bytes(path, proto.SerializeToString())
    return path


def read_onnx_meta(path) -> dict:
    """The foveal metadata of an .onnx file ({} when it has none), without loading its weights."""
    try:
        import onnx
    except ImportError:
        raise missing_runtime(f"weights={path}") from None
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise FovealError(f"{path}: not a valid ONNX file ({str(e).splitlines()[0] if str(e) else e})") from None
    entry = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
    try:
        meta = json.loads(entry) if entry else {}
    except json.JSONDecodeError:
        raise FovealError(f"{path}: its foveal metadata is not valid JSON") from None
    return meta if isinstance(meta, dict) else {}


def session_runner(path, device: torch.device):
    """fn(images tensor) -> list of output tensors on the images' device, run by onnxruntime."""
    try:
        import onnxruntime
    except ImportError:
        raise missing_runtime(f"weights={path}") from None
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # as configure_cpu set torch's
    options.inter_op_num_threads = 1
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    name, fixed_batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]

    def run(images: torch.Tensor) -> list[torch.Tensor]:
        array = images.detach().float().cpu().contiguous().numpy()
        if isinstance(fixed_batch, int) and len(array) != fixed_batch:  # a fixed-batch graph: one image at a time
            parts = [session.run(None, {name: array[k:k + 1]}) for k in range(len(array))]
            outputs = [np.concatenate(column) for column in zip(*parts)]
        else:
            outputs = session.run(None, {name: array})
        return [torch.from_numpy(output).to(images.device) for output in outputs]

    return run


class OnnxModel(nn.Module):
    """An exported graph with one output, in the place of the model it came from (eval contract only)."""

    def __init__(self, run):
        super().__init__()
        self.run = run

    def forward(self, images):
        return self.run(images)[0]


def load_onnx(path, meta: dict, device: torch.device) -> nn.Module:
    """The model of an exported file: the task's model around the graph (run_exported), or OnnxModel."""
    from ..registry import create_model

    run = session_runner(path, device)
    if meta.get("onnx", {}).get("wrapped"):
        model = create_model(meta["model"], meta["task"], **meta["model_kwargs"])
        return model.run_exported(run).eval()
    return OnnxModel(run).eval()
