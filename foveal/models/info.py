"""Per-layer output shapes, parameters and multiply-accumulates (MACs) of a model, from one forward.

MACs are torch's FlopCounterMode FLOPs halved. That is the convention of torchvision's published
"GFLOPS" (`weights.meta['_ops']`): conv, linear, matmul and attention count; adds, norms,
activations and pooling do not. The forward runs on the `meta` device, so even a 600M-parameter
model costs no memory and little time; models with ops that meta cannot run fall back to the CPU.
"""

import contextlib
import copy
import itertools
from unittest import mock
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from foveal.errors import FovealError


@dataclass
class LayerRow:
    name: str  # fully qualified name as in model.named_modules(), "" for the model itself
    type: str  # class name
    output_shape: tuple  # () when the module never ran on its own (its parent used its weights)
    params: int  # parameters owned directly by this module
    macs: int  # MACs done by this module's own code, not by its children


@dataclass
class ModelInfo:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    input_shape: tuple  # (batch, channels, height, width)


def model_info(model: nn.Module, imgsz: int | tuple[int, int], channels: int = 3,
               batch: int = 1) -> ModelInfo:
    """Profile one eval-mode forward of a (batch, channels, *imgsz) input; `model` is left as it was.

    Rows are the modules that own parameters, do MACs themselves, or ran as leaves, in
    named_modules() order; their MACs add up to total_macs.
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    input_shape = (batch, channels, height, width)
    try:
        shapes, flops, total_flops = _profile(_meta_copy(model), input_shape, "meta")
    except Exception as error:
        # Ops with no meta kernel raise NotImplementedError; data-dependent ones (.item()) mention meta.
        if not (isinstance(error, NotImplementedError) or "meta" in str(error).lower()):
            raise _cannot_run(model, imgsz, error) from error
        try:
            shapes, flops, total_flops = _profile(_cpu_copy(model), input_shape, "cpu")
        except Exception as cpu_error:
            raise _cannot_run(model, imgsz, cpu_error) from cpu_error
    parameters = list(model.parameters())
    return ModelInfo(
        rows=_rows(model, shapes, flops),
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        total_macs=total_flops // 2,
        input_shape=input_shape,
    )


def _meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy with every parameter and buffer on meta; the weights themselves are never copied."""
    memo = {}
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        meta = tensor.detach().to("meta")
        is_parameter = isinstance(tensor, nn.Parameter)
        memo[id(tensor)] = nn.Parameter(meta, tensor.requires_grad) if is_parameter else meta
    return copy.deepcopy(model, memo)


def _cpu_copy(model: nn.Module) -> nn.Module:
    copied = copy.deepcopy(model)
    on_meta = any(t.is_meta for t in itertools.chain(copied.parameters(), copied.buffers()))
    # A model built on meta has no values to move: give it uninitialised memory instead.
    return copied.to_empty(device="cpu") if on_meta else copied.cpu()


def _profile(model: nn.Module, input_shape: tuple, device: str) -> tuple[dict, dict, int]:
    """Run `model` (a throwaway copy, so hooks stay on it) once on a random input.

    Returns {name: output shape}, {name: FLOPs including its children's} and the total FLOPs.
    """
    names = {module: name for name, module in model.named_modules()}
    shapes = {}

    def record_shape(module, inputs, output):
        shapes[names[module]] = _shape_of(output)

    for module in names:
        module.register_forward_hook(record_shape)
    dtype = next(itertools.chain(model.parameters(), [torch.empty(0)])).dtype
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(torch.randn(input_shape, dtype=dtype, device=device))
    # FlopCounterMode names the model by its class and submodules "ClassName.<fqn>".
    prefix = type(model).__name__
    counts = counter.get_flop_counts()
    flops = {name: sum(counts.get(f"{prefix}.{name}" if name else prefix, {}).values())
             for name in names.values()}
    return shapes, flops, counter.get_total_flops()


def _rows(model: nn.Module, shapes: dict, flops: dict) -> list[LayerRow]:
    rows = []
    for name, module in model.named_modules():
        children = [f"{name}.{child}" if name else child for child, _ in module.named_children()]
        children_flops = sum(flops.get(child, 0) for child in children)
        macs = (flops.get(name, 0) - children_flops) // 2
        params = sum(p.numel() for p in module.parameters(recurse=False))
        ran_as_leaf = name in shapes and not children
        if ran_as_leaf or params or macs:
            rows.append(LayerRow(name, type(module).__name__, shapes.get(name, ()), params, macs))
    return rows


def _shape_of(output) -> tuple:
    """A tensor's shape; for a tuple/list/dict the shapes of its tensors (one shape if only one)."""
    if isinstance(output, torch.Tensor):
        return tuple(output.shape)
    if isinstance(output, dict):
        output = list(output.values())
    if not isinstance(output, (list, tuple)):
        return ()
    shapes = [shape for shape in map(_shape_of, output) if shape != ()]
    return shapes[0] if len(shapes) == 1 else tuple(shapes)


def _cannot_run(model: nn.Module, imgsz, error: Exception) -> FovealError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return FovealError(f"model {type(model).__name__} cannot run at imgsz={imgsz}: {reason}")


def format_info(info: ModelInfo, max_rows: int | None = None) -> str:
    """A fixed-width table: index, name, type, output shape, params, MACs, then a totals line."""
    shown = info.rows if max_rows is None else info.rows[:max_rows]
    table = [("#", "name", "type", "output shape", "params", "MACs")]
    for index, row in enumerate(shown):
        table.append((str(index), row.name or "(model)", row.type, _shape_text(row.output_shape),
                      _human(row.params), _human(row.macs)))
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    right_aligned = {0, 4, 5}
    lines = ["  ".join(cell.rjust(w) if c in right_aligned else cell.ljust(w)
                       for c, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in table]
    if len(shown) < len(info.rows):
        lines.append(f"... {len(info.rows) - len(shown)} more rows")
    lines.append(f"{info.total_params:,} parameters ({info.trainable_params:,} trainable), "
                 f"{info.total_macs / 1e9:.3f} GMACs, input {tuple(info.input_shape)}")
    return "\n".join(lines)


def data_dependent_note(model: nn.Module) -> str:
    """A warning for two-stage detectors, whose heads run once per proposal or detection: their MACs
    above are for this random input through these weights (untrained: about the most there can be)."""
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN

    if not any(isinstance(module, GeneralizedRCNN) for module in model.modules()):
        return ""
    return ("note: the RoI heads run once per proposal (and a mask head once per detection), so their MACs "
            "depend on the image and the weights; these are for a random image")


def _shape_text(shape: tuple) -> str:
    """(1, 64, 56, 56) -> '1x64x56x56'; nested shapes as they print; '-' for a module that never ran."""
    if not shape:
        return "-"
    return "x".join(map(str, shape)) if all(isinstance(size, int) for size in shape) else str(shape)


def _human(number: int) -> str:
    """1234 -> '1.2K', 3_400_000_000 -> '3.4G'; numbers under 1000 as they are."""
    for unit, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(number) >= scale:
            return f"{number / scale:.1f}{unit}"
    return str(number)


@contextlib.contextmanager
def parameters_on_meta():
    """Build models inside this to put every parameter on meta as it is registered (no weight memory).

    torch.device('meta') alone is not enough: RegNet's builder computes its widths with tensors
    and calls .tolist(), which meta tensors cannot do.
    """
    register = nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None:
            param = nn.Parameter(param.detach().to("meta"), param.requires_grad)
        register(module, name, param)

    with mock.patch.object(nn.Module, "register_parameter", register_on_meta):
        yield
