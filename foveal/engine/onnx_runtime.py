"""Running an exported .onnx file in `val` and `predict` in the model's place, and reading its metadata.

onnxruntime on the CPU (CUDA where its provider and the device are there), with torch's thread count.
A model with `run_exported(fn)` keeps its own post-processing around the exported graph (YOLO; yolo_*-seg
also assembles the masks there, returning its eval output {boxes, scores, labels, masks}); any other is
replaced by OnnxModel, which returns the graph's single output as a tensor.
"""

import json

import numpy as np
import torch
from torch import nn

from ..errors import FovealError

META_KEY = "foveal"  # metadata_props key holding the weights metadata as JSON
CONF_INPUT = "nms_conf"  # the NMS graphs' score threshold: an input with a default (an initializer of its name)


def missing_runtime(what: str) -> FovealError:
    return FovealError(f"{what} needs the ONNX packages: pip install 'foveal[deploy]' (onnx, onnxruntime, onnxscript)")


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
    # idle threads would spin after each run and take the cores from the torch pre-processing that follows
    # (measured: 4-8 ms of preprocess instead of 0.3 ms at batch 1)
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: its warning that an NMS graph's nms_conf input is not folded
    providers = ["CPUExecutionProvider"]
    if device.type == "cuda" and "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        providers.insert(0, ("CUDAExecutionProvider", {"device_id": device.index or 0}))
    session = onnxruntime.InferenceSession(str(path), options, providers=providers)
    name, fixed_batch = session.get_inputs()[0].name, session.get_inputs()[0].shape[0]
    input_type = np.float16 if session.get_inputs()[0].type == "tensor(float16)" else np.float32  # half=true graphs

    # an input with a default (an initializer) is listed apart from the inputs that must be fed
    takes = {graph_input.name for graph_input in [*session.get_inputs()[1:], *session.get_overridable_initializers()]}

    def run(images: torch.Tensor, **scalars) -> list[torch.Tensor]:
        """scalars: values of the graph's other inputs (an NMS graph's nms_conf), where it has them."""
        array = images.detach().cpu().contiguous().numpy().astype(input_type, copy=False)
        extra = {key: np.asarray(value, np.float32) for key, value in scalars.items() if key in takes}
        if isinstance(fixed_batch, int) and len(array) != fixed_batch:  # a fixed-batch graph: one image at a time
            parts = [session.run(None, {name: array[k:k + 1], **extra}) for k in range(len(array))]
            outputs = [np.concatenate(column) for column in zip(*parts)]
        else:
            outputs = session.run(None, {name: array, **extra})
        # an fp16 graph's outputs are read in float32, as the post-processing after it expects
        outputs = [output.astype(np.float32) if output.dtype == np.float16 else output for output in outputs]
        return [torch.from_numpy(output).to(images.device) for output in outputs]

    return run


class ConfFed:
    """run(images) of an NMS graph at its model's conf of the moment (predict's, val's, the hint's look again), not
    the one it was exported with. It holds the model, so a deep copy of the model (the fused eval model) feeds the
    copy's conf, not the original's."""

    def __init__(self, run, model: nn.Module):
        self.run, self.model = run, model

    def __call__(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.run(images, **{CONF_INPUT: self.model.conf})


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
        if meta["onnx"].get("nms"):  # the graph gives the detections: the model only unpacks them
            return model.run_exported(ConfFed(run, model), nms=True).eval()
        return model.run_exported(run).eval()
    return OnnxModel(run).eval()
