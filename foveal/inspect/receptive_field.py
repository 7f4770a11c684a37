"""Theoretical receptive field and jump of every tensor in one forward, traced op by op.

A feature sees `size` input pixels and its neighbours are `jump` input pixels apart. A window of k taps,
dilation d and stride s (convolution, pooling, unfold) turns (size, jump) into
(size + (k - 1) * d * jump, jump * s); see Araujo, Norris & Sim, "Computing Receptive Fields of
Convolutional Neural Networks" (Distill, 2019). Upsampling (transposed convolution, interpolation, pixel
shuffle) divides the jump instead. Where paths meet (residual adds, Inception and DenseNet
concatenations) the result sees what the largest of them sees, axis by axis.

`ReceptiveFieldMode` attaches (field, feature-map size) to every tensor an aten op produces from the
input, so any forward works, whatever its Python code does. Three choices beyond the formula:
- ops that mix every position (global pooling and means, attention, a linear layer over flattened
  positions) see the whole input, shown as size None;
- a whole-input tensor broadcast over the positions of a local one (a squeeze-excitation gate scaling
  its features) does not make the result whole: the field is the one of the conv path, which is what
  the number is for (a full-size one, like attention added to a residual stream, does);
- normalisation statistics are not counted (BatchNorm in eval mode has none; GroupNorm's and
  InstanceNorm's do span the image, but like a gate they only rescale).
"""

import math
from dataclasses import dataclass
from fractions import Fraction

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.weak import WeakTensorKeyDictionary


@dataclass(frozen=True)
class ReceptiveField:
    size: tuple | None  # (height, width) in input pixels; None: the whole input
    jump: tuple | None  # (height, width) input pixels between neighbouring outputs; None with size None

    @property
    def whole(self) -> bool:
        return self.size is None


WHOLE = ReceptiveField(None, None)

# ops whose output does not depend on the values of their tensor arguments
_VALUE_FREE = {"empty_like", "zeros_like", "ones_like", "full_like", "rand_like", "randn_like",
               "randint_like", "new_empty", "new_empty_strided", "new_zeros", "new_ones", "new_full"}
# ops along one dimension: they mix positions when that dimension is spatial
_ALONG_DIMS = {"mean", "sum", "amax", "amin", "max", "min", "argmax", "argmin", "var", "std", "var_mean",
               "std_mean", "logsumexp", "norm", "linalg_vector_norm", "prod", "_softmax", "_safe_softmax",
               "_log_softmax", "cumsum", "sort", "topk"}
# position-mixing products: attention scores, RoI pooling (the boxes can be anywhere)
_MIXING = {"bmm", "baddbmm", "addbmm", "roi_align", "roi_pool", "ps_roi_align", "ps_roi_pool"}
_UPSAMPLE_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4}


class ReceptiveFieldMode(TorchDispatchMode):
    """Inside `with ReceptiveFieldMode() as mode:`, after `mode.track_input(x)`, `mode.field_of(t)` is the
    receptive field of any tensor `t` computed from x (None for those that are not, like the weights)."""

    def __init__(self):
        super().__init__()
        self._traced = WeakTensorKeyDictionary()  # tensor -> (ReceptiveField, (height, width) of its grid)
        self.batch = 1

    def track_input(self, image: torch.Tensor):
        """`image` is (batch, channels, height, width): each value sees one pixel."""
        self.batch = image.shape[0]
        self._traced[image] = (ReceptiveField((1, 1), (1, 1)), tuple(image.shape[-2:]))

    def field_of(self, output) -> ReceptiveField | None:
        """The field of a tensor, or of the largest-field tensor in a (nested) tuple, list or dict."""
        fields = [self._traced[t][0] for t in _tensors(output) if t in self._traced]
        return max(fields, key=_extent, default=None)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        inputs = [(t, self._traced[t]) for t in _tensors((args, kwargs)) if t in self._traced]
        name = func._overloadpacket.__name__
        if not inputs or name in _VALUE_FREE:
            return output
        bound = _bind(func, args, kwargs)
        traced = self._propagate(name, bound, inputs, output)
        for tensor in _tensors(output):
            self._traced[tensor] = traced
        for argument in func._schema.arguments:  # in-place ops: the tensor viewed also changed
            tensor = bound[argument.name]
            if argument.alias_info and argument.alias_info.is_write and isinstance(tensor, torch.Tensor):
                self._traced[tensor] = traced
                if tensor._base is not None:
                    base = self._traced.get(tensor._base)
                    both = [(None, base), (None, traced)]
                    self._traced[tensor._base] = traced if base is None else _meet(both)
        return output

    def _propagate(self, name, bound, inputs, output):
        """(field, grid) of the output of op `name` called with `bound` arguments, some of them traced."""
        out = next(iter(_tensors(output)), None)
        if name in ("mm", "addmm"):
            rows = bound["mat1" if name == "addmm" else "self"]
            grid = self._traced[rows][1] if rows in self._traced else None
            # (batch * positions, channels) @ weight is a 1x1 conv; anything else mixes positions
            pointwise = (grid is not None and bound["mat2"] not in self._traced
                         and rows.shape[0] == self.batch * math.prod(grid))
            return _meet(inputs, out) if pointwise else (WHOLE, inputs[0][1][1])
        if name in _MIXING or "attention" in name:
            return WHOLE, inputs[0][1][1]
        first = next(iter(bound.values()))  # the input of windows, reductions and resampling
        if not isinstance(first, torch.Tensor) or first not in self._traced or out is None:
            return _meet(inputs, out)
        field, grid = self._traced[first]
        in_grid, out_grid = tuple(first.shape[-2:]), tuple(out.shape[-2:])
        if name in ("convolution", "_convolution") and bound["weight"].dim() == 4:
            kernel = tuple(bound["weight"].shape[2:])
            if bound["transposed"]:
                return _transposed_window(field, kernel, bound, out_grid)
            return _window(field, kernel, bound["stride"], bound["dilation"], out_grid)
        if name in ("max_pool2d", "max_pool2d_with_indices", "avg_pool2d") and first.dim() >= 3:
            kernel = _pair(bound["kernel_size"])
            return _window(field, kernel, bound["stride"] or kernel, bound.get("dilation", 1), out_grid)
        if name == "im2col":  # unfold: (N, C*k*k, L), then matmuls of its columns
            kernel = _pair(bound["kernel_size"])
            return _window(field, kernel, bound["stride"], bound["dilation"], _unfolded_grid(in_grid, bound))
        if name in ("_adaptive_avg_pool2d", "adaptive_avg_pool2d", "adaptive_max_pool2d"):
            return _adaptive_window(field, in_grid, out_grid)
        if (name.lstrip("_").startswith("upsample") and name.endswith(("2d", "2d_aa"))
                or name in ("pixel_shuffle", "pixel_unshuffle")):
            return _resample(field, in_grid, out_grid, name)
        if name in ("constant_pad_nd", "reflection_pad2d", "replication_pad2d") and out.dim() >= 3:
            return _meet(inputs, out)[0], out_grid
        # a reduction names its dims or takes one tensor (max.other, an elementwise max, takes two)
        if name in _ALONG_DIMS and ("dim" in bound or len(_tensors(bound)) == 1):
            return (WHOLE, grid) if _reduces_positions(first, bound.get("dim"), grid) else _meet(inputs, out)
        return _meet(inputs, out)


def _window(field, kernel, stride, dilation, out_grid):
    """A sliding window of `kernel` taps (height, width) whose output is `out_grid` positions."""
    if field.whole:
        return field, out_grid
    stride, dilation = _pair(stride), _pair(dilation)
    size = tuple(s + (k - 1) * d * j for s, k, d, j in zip(field.size, kernel, dilation, field.jump))
    jump = tuple(j * s for j, s in zip(field.jump, stride))
    return ReceptiveField(size, jump), out_grid


def _transposed_window(field, kernel, bound, out_grid):
    """A transposed convolution: an output sees the inputs whose taps land on it, which depends on its
    position modulo the stride; the field takes the widest case (a 2x2 stride-2 one grows nothing)."""
    if field.whole:
        return field, out_grid
    size, jump = [], []
    for s, j, k, stride, dilation, padding in zip(field.size, field.jump, kernel, _pair(bound["stride"]),
                                                  _pair(bound["dilation"]), _pair(bound["padding"])):
        span = 0
        for residue in range(stride):
            taps = [t for t in range(k) if (residue + padding - t * dilation) % stride == 0]
            if taps:
                span = max(span, (taps[-1] - taps[0]) * dilation // stride)
        size.append(s + span * j)
        jump.append(j / Fraction(stride))
    return ReceptiveField(tuple(size), tuple(jump)), out_grid


def _adaptive_window(field, grid, out_grid):
    """Adaptive pooling to `out_grid`: to 1x1 it is global; otherwise bins of about in/out positions."""
    if field.whole or (out_grid == (1, 1) and grid != (1, 1)):
        return WHOLE, out_grid
    size, jump = [], []
    for s, j, n_in, n_out in zip(field.size, field.jump, grid, out_grid):
        widest = max(-(-(i + 1) * n_in // n_out) - i * n_in // n_out for i in range(n_out))
        size.append(s + (widest - 1) * j)
        jump.append(j * Fraction(n_in, n_out))
    return ReceptiveField(tuple(size), tuple(jump)), out_grid


def _resample(field, grid, out_grid, name):
    """Interpolation and pixel (un)shuffle: the jump scales by in/out; interpolation with t taps reads
    t neighbouring inputs, pixel unshuffle a block of in/out of them."""
    if field.whole:
        return field, out_grid
    size, jump = [], []
    for s, j, n_in, n_out in zip(field.size, field.jump, grid, out_grid):
        if name == "pixel_unshuffle":
            taps = n_in // n_out
        elif name == "pixel_shuffle" or n_in == n_out:  # resizing to the same size copies each pixel
            taps = 1
        else:
            taps = next(t for mode, t in _UPSAMPLE_TAPS.items() if mode in name)
            if name.endswith("_aa") and n_out < n_in:  # antialiased downscaling widens the filter
                taps *= -(-n_in // n_out)
        size.append(s + (taps - 1) * j)
        jump.append(j * Fraction(n_in, n_out))
    return ReceptiveField(tuple(size), tuple(jump)), out_grid


def _meet(inputs, out=None):
    """Where paths meet (add, mul, cat, ...) of [(tensor, (field, grid))]: the largest field axis by
    axis, with the jump of the largest one; whole-input gates broadcast over `out` do not count."""
    if any(field.whole and not _broadcast(tensor, out) for tensor, (field, _) in inputs):
        return WHOLE, inputs[0][1][1]
    local = [(field, grid) for _, (field, grid) in inputs if not field.whole]
    if not local:
        return inputs[0][1]
    largest, grid = max(local, key=lambda item: _extent(item[0]))
    size = tuple(max(sizes) for sizes in zip(*(field.size for field, _ in local)))
    return ReceptiveField(size, largest.jump), grid


def _broadcast(tensor, out) -> bool:
    """Whether `tensor` is spread over more elements of `out` than it has, like a (N, C, 1, 1) gate."""
    if tensor is None or out is None or tensor.numel() >= out.numel() or tensor.dim() > out.dim():
        return False
    return all(size in (1, out_size) for size, out_size in zip(reversed(tensor.shape), reversed(out.shape)))


def _extent(field: ReceptiveField) -> float:
    return math.inf if field.whole else field.size[0] * field.size[1]


def _reduces_positions(tensor, dims, grid) -> bool:
    """Whether reducing `tensor` over `dims` mixes positions: (N, C, H, W) or channels-last
    (N, H, W, C) feature maps over H or W, (N, tokens, C) sequences over the tokens."""
    if tensor.dim() < 3:
        return False
    if dims is None or dims == []:
        return True
    dims = {d % tensor.dim() for d in ([dims] if isinstance(dims, int) else dims)}
    if tensor.dim() == 3:
        return 1 in dims
    spatial = {1, 2} if tuple(tensor.shape[1:3]) == grid and tuple(tensor.shape[-2:]) != grid else {2, 3}
    return bool(dims & spatial)


def _unfolded_grid(grid, bound):
    kernel, stride = _pair(bound["kernel_size"]), _pair(bound["stride"])
    dilation, padding = _pair(bound["dilation"]), _pair(bound["padding"])
    return tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                 for n, k, s, d, p in zip(grid, kernel, stride, dilation, padding))


def _pair(value) -> tuple:
    if isinstance(value, int):
        return value, value
    value = tuple(value)
    return value * 2 if len(value) == 1 else value[-2:]


def _bind(func, args, kwargs) -> dict:
    """An op's arguments by name, defaults included (its schema gives the names)."""
    arguments = func._schema.arguments
    bound = {a.name: a.default_value if a.has_default_value() else None for a in arguments}
    bound.update(zip((a.name for a in arguments), args))
    bound.update(kwargs)
    return bound


def _tensors(tree) -> list:
    return [leaf for leaf in tree_leaves(tree) if isinstance(leaf, torch.Tensor)]
