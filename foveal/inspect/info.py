"""The `info` mode of every task: per-layer output shapes, parameters and multiply-accumulates (MACs) of
a model, from one forward; on request each layer's receptive field (see receptive_field.py) and a
training-memory estimate.

MACs are torch's FlopCounterMode FLOPs halved (FLOPs = 2 x MACs). That is the convention of
torchvision's published "GFLOPS" (`weights.meta['_ops']`): conv, linear, matmul and attention count;
adds, biases, norms, activations and pooling do not. The forward runs on the `meta` device, so even a
600M-parameter model costs no memory and little time; models with ops that meta cannot run fall back
to the CPU.
"""

import contextlib
import copy
import itertools
from unittest import mock
import dataclasses
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from ..engine.checkpoint import trained_meta
from ..errors import FovealError
from ..registry import create_model
from .receptive_field import ReceptiveField, ReceptiveFieldMode


@dataclass
class LayerRow:
    name: str  # fully qualified name as in model.named_modules(), "" for the model itself
    type: str  # class name
    output_shape: tuple  # () when the module never ran on its own (its parent used its weights)
    params: int  # parameters owned directly by this module
    macs: int  # MACs done by this module's own code, not by its children
    output_bytes: int = 0  # memory of its output tensors, at the dtype the forward ran in
    field: ReceptiveField | None = None  # of its output (the largest of several); None: not asked, never ran


@dataclass
class ModelInfo:
    rows: list[LayerRow]
    total_params: int
    trainable_params: int
    total_macs: int
    input_shape: tuple  # (batch, channels, height, width), or a forecaster's (batch, window, features)
    weight_bytes: int = 0  # parameters and buffers
    trainable_bytes: int = 0  # parameters that require grad: each has a gradient and optimizer state
    saved_bytes: int | None = None  # what autograd keeps for backward in this forward; None: not asked
    dtype: torch.dtype = torch.float32  # of the forward
    # of every module's output, blocks included (the add of a residual block, the concatenation of an
    # Inception block happen in the block's own forward); empty unless asked
    fields: dict[str, ReceptiveField | None] = dataclasses.field(default_factory=dict)


@dataclass
class _Trace:
    """What one forward recorded, by module name."""
    shapes: dict
    flops: dict  # FLOPs including the module's children's
    total_flops: int
    output_bytes: dict
    fields: dict = dataclasses.field(default_factory=dict)
    saved_bytes: int | None = None
    dtype: torch.dtype = torch.float32


def model_info(model: nn.Module, imgsz: int | tuple[int, int], channels: int = 3, batch: int = 1,
               receptive_field: bool = False, memory: bool = False, input_shape: tuple | None = None) -> ModelInfo:
    """Profile one eval-mode forward of a (batch, channels, *imgsz) input, or of `input_shape` when given
    (a forecaster's (batch, window, features)); `model` is left as it was.

    Rows are the modules that own parameters, do MACs themselves, or ran as leaves, in
    named_modules() order; their MACs add up to total_macs. `receptive_field` fills each row's field;
    `memory` runs the forward with autograd on to measure saved_bytes (see training_memory).
    """
    height, width = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    input_shape = input_shape or (batch, channels, height, width)
    try:
        trace = _profile(_meta_copy(model), input_shape, "meta", receptive_field, memory)
    except Exception as error:
        # Ops with no meta kernel raise NotImplementedError; data-dependent ones (.item()) mention meta.
        if not (isinstance(error, NotImplementedError) or "meta" in str(error).lower()):
            raise _cannot_run(model, imgsz, error) from error
        try:
            trace = _profile(_cpu_copy(model), input_shape, "cpu", receptive_field, memory)
        except Exception as cpu_error:
            raise _cannot_run(model, imgsz, cpu_error) from cpu_error
    parameters = list(model.parameters())
    return ModelInfo(
        rows=_rows(model, trace),
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        total_macs=trace.total_flops // 2,
        input_shape=input_shape,
        weight_bytes=sum(t.numel() * t.element_size() for t in itertools.chain(parameters, model.buffers())),
        trainable_bytes=sum(p.numel() * p.element_size() for p in parameters if p.requires_grad),
        saved_bytes=trace.saved_bytes,
        dtype=trace.dtype,
        fields=trace.fields,
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


def _profile(model: nn.Module, input_shape: tuple, device: str, receptive_field: bool,
             memory: bool) -> _Trace:
    """Run `model` (a throwaway copy, so hooks stay on it) once on a random input."""
    names = {module: name for name, module in model.named_modules()}
    fields_mode = ReceptiveFieldMode() if receptive_field else contextlib.nullcontext()
    shapes, output_bytes, fields = {}, {}, {}

    def record(module, inputs, output):
        name = names[module]
        shapes[name] = _shape_of(output)
        output_bytes[name] = sum(t.numel() * t.element_size() for t in _tensors(output))
        if receptive_field:
            fields[name] = fields_mode.field_of(output)

    for module in names:
        module.register_forward_hook(record)
    dtype = next(itertools.chain(model.parameters(), [torch.empty(0)])).dtype
    image = torch.randn(input_shape, dtype=dtype, device=device)
    saved = _SavedTensors(model)
    with (saved if memory else torch.no_grad()), FlopCounterMode(display=False) as counter, fields_mode:
        if receptive_field:
            fields_mode.track_input(image)
        model.eval()(image)
    # FlopCounterMode names the model by its class and submodules "ClassName.<fqn>".
    prefix = type(model).__name__
    counts = counter.get_flop_counts()
    flops = {name: sum(counts.get(f"{prefix}.{name}" if name else prefix, {}).values())
             for name in names.values()}
    return _Trace(shapes, flops, counter.get_total_flops(), output_bytes, fields,
                  saved.bytes if memory else None, dtype)


class _SavedTensors(torch.autograd.graph.saved_tensors_hooks):
    """With autograd on, adds up the memory of the tensors autograd saves for backward, once per storage
    (in-place ops and views share one) and without the weights. On meta it costs nothing."""

    def __init__(self, model: nn.Module):
        weights = itertools.chain(model.parameters(), model.buffers())
        self.storages = {_storage_id(t) for t in weights}  # their storages are not activations
        self.kept = []  # holds every saved tensor, so that no storage id is reused during the forward
        self.bytes = 0
        super().__init__(self._pack, lambda tensor: tensor)

    def _pack(self, tensor):
        key = _storage_id(tensor)
        if key not in self.storages:
            self.storages.add(key)
            self.kept.append(tensor)
            self.bytes += tensor.untyped_storage().nbytes()
        return tensor

    def __enter__(self):
        self._grad = torch.enable_grad()
        self._grad.__enter__()
        return super().__enter__()

    def __exit__(self, *exc_info):
        super().__exit__(*exc_info)
        self._grad.__exit__(*exc_info)


def _storage_id(tensor: torch.Tensor) -> int:
    # the address of the storage object, which meta tensors have too (their data_ptr() is 0)
    return tensor.untyped_storage()._cdata


def _rows(model: nn.Module, trace: _Trace) -> list[LayerRow]:
    children = {name: [f"{name}.{child}" if name else child for child, _ in module.named_children()]
                for name, module in model.named_modules()}

    def flops_of(name):  # a container that never ran itself (a ModuleList) did its children's FLOPs
        ran = name in trace.shapes
        return trace.flops.get(name, 0) if ran else sum(flops_of(child) for child in children.get(name, []))

    rows = []
    for name, module in model.named_modules():
        ran = name in trace.shapes
        macs = (flops_of(name) - sum(flops_of(child) for child in children.get(name, []))) // 2 if ran else 0
        params = sum(p.numel() for p in module.parameters(recurse=False))
        ran_as_leaf = ran and not children.get(name)
        if ran_as_leaf or params or macs:
            rows.append(LayerRow(name, type(module).__name__, trace.shapes.get(name, ()), params, macs,
                                 trace.output_bytes.get(name, 0), trace.fields.get(name)))
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


def _tensors(output) -> list[torch.Tensor]:
    """The tensors in an output, however nested in tuples, lists and dicts."""
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        output = list(output.values())
    if not isinstance(output, (list, tuple)):
        return []
    return [tensor for item in output for tensor in _tensors(item)]


def _cannot_run(model: nn.Module, imgsz, error: Exception) -> FovealError:
    reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:200]
    return FovealError(f"model {type(model).__name__} cannot run at imgsz={imgsz}: {reason}")


def format_info(info: ModelInfo, max_rows: int | None = None, rf: bool = False, memory: bool = False,
                batch: int = 64, optimizer: str = "adamw", momentum: float = 0.9) -> str:
    """A fixed-width table: index, name, type, output shape, params, MACs (with `rf` the receptive field
    and jump, with `memory` each output's memory), a totals line, and with `memory` the training
    estimate of training_memory(info, batch, optimizer, momentum)."""
    shown = info.rows if max_rows is None else info.rows[:max_rows]
    header = ["#", "name", "type", "output shape", "params", "MACs"]
    header += ["rf px", "jump"] if rf else []
    header += ["out memory"] if memory else []
    table = [header]
    for index, row in enumerate(shown):
        line = [str(index), row.name or "(model)", row.type, _shape_text(row.output_shape),
                _human(row.params), _human(row.macs)]
        line += _field_text(row.field) if rf else []
        line += [_bytes(row.output_bytes) if row.output_shape else "-"] if memory else []
        table.append(line)
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if c in (1, 2, 3) else cell.rjust(w)
                       for c, (cell, w) in enumerate(zip(line, widths))).rstrip() for line in table]
    if len(shown) < len(info.rows):
        lines.append(f"... {len(info.rows) - len(shown)} more rows")
    if rf:
        lines += ["rf px: theoretical receptive field in input pixels (where paths meet, the largest; gates",
                  "  such as squeeze-excitation not counted; '>=input' once global pooling, attention or a",
                  "  linear layer mixes every position); jump: input pixels between neighbouring outputs"]
    if memory:
        lines.append(f"out memory: each layer's output for this input, {_dtype_name(info.dtype)}")
    macs = info.total_macs / 1e9
    lines.append(f"{info.total_params:,} parameters ({info.trainable_params:,} trainable), "
                 f"{macs:.3f} GMACs (2x = {2 * macs:.3f} GFLOPs), input {tuple(info.input_shape)}")
    if memory and info.saved_bytes is None:
        lines.append("training memory: not measured, model_info(..., memory=True) does")
    elif memory:
        lines += _training_memory_lines(training_memory(info, batch, optimizer, momentum))
    return "\n".join(lines)


@dataclass
class TrainingMemory:
    """Bytes that training with a batch of `batch` images holds at its peak, roughly (see training_memory)."""
    batch: int
    optimizer: str
    optimizer_copies: int  # optimizer state, in copies of the trainable parameters
    weights: int
    gradients: int
    optimizer_state: int
    activations: int
    activations_per_image: int
    dtype: torch.dtype

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations


def training_memory(info: ModelInfo, batch: int, optimizer: str, momentum: float = 0.9) -> TrainingMemory:
    """Weights, one gradient per trainable parameter, optimizer state (SGD with momentum keeps one copy of
    the trainable parameters, without none, Adam and AdamW two) and activations: what autograd saved in
    the forward of `info` (model_info(..., memory=True)), scaled from its batch to `batch`.

    An estimate: in-place ops, mixed precision, activation checkpointing, cuDNN workspaces and the
    allocator's cache all change what a GPU really holds.
    """
    copies = {"sgd": 1 if momentum else 0, "adam": 2, "adamw": 2}
    if optimizer not in copies:
        raise ValueError(f"optimizer must be one of {sorted(copies)}, not {optimizer!r}")
    if info.saved_bytes is None:
        raise ValueError("training_memory needs model_info(..., memory=True)")
    per_image = info.saved_bytes // info.input_shape[0]
    return TrainingMemory(batch, optimizer, copies[optimizer], info.weight_bytes, info.trainable_bytes,
                          copies[optimizer] * info.trainable_bytes, per_image * batch, per_image, info.dtype)


def _training_memory_lines(memory: TrainingMemory) -> list[str]:
    copies = f"{memory.optimizer_copies} cop{'y' if memory.optimizer_copies == 1 else 'ies'}"
    state = {"sgd": "momentum buffer", "adam": "exp_avg, exp_avg_sq", "adamw": "exp_avg, exp_avg_sq"}
    parts = [
        ("weights", memory.weights, "parameters and buffers"),
        ("gradients", memory.gradients, "one per trainable parameter"),
        ("optimizer state", memory.optimizer_state,
         f"{memory.optimizer}: {copies} of the trainable parameters"
         + (f" ({state[memory.optimizer]})" if memory.optimizer_copies else " (no momentum)")),
        ("activations", memory.activations,
         f"{_bytes(memory.activations_per_image)} per image x {memory.batch}"),
        ("total", memory.total, ""),
    ]
    title = f"training memory, batch {memory.batch}, {memory.optimizer}, {_dtype_name(memory.dtype)}"
    return [f"{title} (an estimate):",
            *(f"  {name:<16}{_bytes(size):>10}  {note}".rstrip() for name, size, note in parts),
            "  activations: the tensors autograd saved for backward in one eval-mode forward, once per",
            "  storage; in-place ops, mixed precision (about half the activations), activation",
            "  checkpointing, cuDNN workspaces and the allocator's cache change the total"]


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


def _field_text(field: ReceptiveField | None) -> list[str]:
    """[rf, jump] cells: '212', '32'; 'HxW' when the axes differ; '-' for a layer with no field."""
    if field is None:
        return ["-", "-"]
    if field.whole:
        return [">=input", "-"]
    return ["x".join(dict.fromkeys(map(_number, axes))) for axes in (field.size, field.jump)]


def _number(value) -> str:
    """An exact number (the jump after upsampling is a fraction): 212, 0.5, 0.33."""
    return str(int(value)) if value == int(value) else f"{float(value):.2f}".rstrip("0")


def _bytes(number: int) -> str:
    """1536 -> '1.5 KiB', 3 * 2**30 -> '3.0 GiB'."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if number >= scale:
            return f"{number / scale:.1f} {unit}"
    return f"{number} B"


def _dtype_name(dtype: torch.dtype) -> str:
    return {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}.get(dtype, str(dtype))


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


def info(task_class, cfg, log=print):
    """Layer table (output shape, parameters, MACs; with cfg.rf receptive field and jump, with cfg.memory
    output memory and a training estimate for cfg.batch and cfg.optimizer) of the model of cfg.weights,
    or of cfg.model (at cfg.imgsz)."""
    if cfg.weights:
        meta = trained_meta(cfg.weights, task_class.name)
        name, kwargs, imgsz = meta["model"], dict(meta["model_kwargs"]), cfg.imgsz or meta["imgsz"]
    else:
        name, kwargs, imgsz = task_class.model_for_info(cfg)
    if "imgsz" in kwargs:  # models whose shape depends on the input size are built for the size asked
        kwargs["imgsz"] = imgsz
    # no memory for the weights, even of a 600M-parameter classifier; models whose cost depends on their
    # outputs (detectors' proposals) are built with their real initial weights instead
    with parameters_on_meta() if task_class.info_on_meta else contextlib.nullcontext():
        model = create_model(name, task_class.name, **kwargs).eval()
    shape, described = task_class.info_input(kwargs, imgsz)
    result = model_info(model, imgsz, receptive_field=cfg.rf, memory=cfg.memory, input_shape=shape)
    if cfg.verbose:
        log(f"{name} {described}")
        log(format_info(result, rf=cfg.rf, memory=cfg.memory, batch=cfg.batch, optimizer=cfg.optimizer,
                        momentum=cfg.momentum))
        if note := data_dependent_note(model):
            log(note)
    return result
