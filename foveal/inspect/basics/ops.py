"""`foveal basics OP key=value`: the first lectures of a CNN course, on a small matrix or an image.

Convolution and pooling run through torch.nn.functional, the code a CNN layer runs, in float64 for
matrices so that printed results are exact. Inline matrices: rows by `;`, values by `,` or spaces;
the channels of a volume by `|`; several filters by `/`, each with one matrix per input channel (CS231n's
5x5x3 input and 3x3x3 filters). A single 2-D kernel on several channels (a colour image, or a `|` volume)
filters each channel on its own, as image filters do; any other channel mismatch is an error.
"""

import inspect
import math
import re
from pathlib import Path
from textwrap import indent

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from ..config import convert
from ..data.images import read_pixels, resolve_source
from ..engine.runs import new_run_dir
from ..errors import FovealError, did_you_mean
from ..files import atomic_write

FORMULA = "(N + 2P - D(F-1) - 1) / S + 1"
BT601 = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 luma weights of R, G, B
FIXED_KERNELS = {  # 3x3; as correlated (what conv computes), sobel_x is positive where brightness grows rightwards
    "identity": [[0, 0, 0], [0, 1, 0], [0, 0, 0]],
    "sharpen": [[0, -1, 0], [-1, 5, -1], [0, -1, 0]],
    "sobel_x": [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]],
    "sobel_y": [[-1, -2, -1], [0, 0, 0], [1, 2, 1]],
    "prewitt_x": [[-1, 0, 1], [-1, 0, 1], [-1, 0, 1]],
    "prewitt_y": [[-1, -1, -1], [0, 0, 0], [1, 1, 1]],
    "laplacian": [[0, 1, 0], [1, -4, 1], [0, 1, 0]],
    "emboss": [[-2, -1, 0], [-1, 1, 1], [0, 1, 2]],
}
SIZED_KERNELS = ("box", "gaussian")  # any odd ksize
KERNEL_NAMES = ("identity", *SIZED_KERNELS, *[name for name in FIXED_KERNELS if name != "identity"])
KERNEL_ALIASES = {"box_blur": "box"}
MAPPINGS = {  # how float results become 0..255 pixels
    "clip": "rounded and clipped to 0..255",
    "abs": "absolute values scaled so that the largest is 255",
    "minmax": "min..max stretched to 0..255",
}
IMAGE_ONLY_KEYS = {"project", "name", "exist_ok", "normalize"}  # meaningless with input=, which only prints


# ---- the Python API: pure functions on tensors and arrays -----------------------------------------

def output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                exact: bool = True) -> int:
    """Positions a window of `kernel` taps takes along `size` inputs: (N + 2P - D(F-1) - 1) / S + 1.
    exact: a FovealError when S does not divide (the sizes do not fit); else floored, as frameworks do."""
    for key, value, least in (("input", size, 1), ("kernel", kernel, 1), ("stride", stride, 1),
                              ("padding", padding, 0), ("dilation", dilation, 1)):
        if value < least:
            raise FovealError(f"{key}: expected an integer >= {least}, got {value}")
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        dilated = f" (dilated: {dilation * (kernel - 1) + 1})" if dilation > 1 else ""
        raise FovealError(f"kernel: {kernel}{dilated} is larger than the padded input {size} + 2*{padding} = "
                          f"{size + 2 * padding}")
    if exact and span % stride:
        raise FovealError(f"stride: the sizes do not fit: {size} + 2*{padding} - {dilation}*({kernel}-1) - 1 = {span} "
                          f"is not divisible by {stride} (remainder {span % stride}); "
                          + fitting_paddings(size, kernel, stride, padding, dilation))
    return span // stride + 1


def fitting_paddings(size: int, kernel: int, stride: int, padding: int, dilation: int) -> str:
    """The paddings nearest `padding` that fit. 2P moves the span by even steps only, so with an even stride
    an odd remainder needs another input size."""
    span = size - dilation * (kernel - 1) - 1
    fits = [p for p in range(padding + stride + 1) if span + 2 * p >= 0 and (span + 2 * p) % stride == 0]
    nearest = [p for p in fits if p < padding][-1:] + [p for p in fits if p > padding][:1]
    if nearest:
        return " or ".join(f"padding={p}" for p in nearest) + " fits"
    remainder = (span + 2 * padding) % stride
    return f"no padding fits stride {stride}: crop the input by {remainder} or pad it by {stride - remainder}"


def formula(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """FORMULA with the numbers and its (floored) result: '(227 + 2*0 - 1*(11-1) - 1) / 4 + 1 = 55'."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    text = f"({size} + 2*{padding} - {dilation}*({kernel}-1) - 1) / {stride} + 1 = {span // stride + 1}"
    return text + (f" (floored: {span % stride} input row(s) left over)" if span % stride else "")


def parse_matrix(text: str, key: str = "input", where: str = "") -> torch.Tensor:
    """'1,0,1; 0,1,0' -> a (rows, columns) float64 tensor: rows by `;`, values by `,` or spaces.
    `where` ('filter 2, channel 1, ') places a mistake within a larger text."""
    rows = [[number(value, key, f"{where}row {i}") for value in re.split(r"[,\s]+", row.strip()) if value]
            for i, row in enumerate(str(text).strip().strip(";").split(";"), 1)]
    if not rows[0]:
        raise FovealError(f"{key}: {where}no values; write a matrix like 1,0,1;0,1,0")
    for i, row in enumerate(rows, 1):
        if len(row) != len(rows[0]):
            raise FovealError(f"{key}: {where}row {i} has {len(row)} value{'s' * (len(row) != 1)}, "
                              f"row 1 has {len(rows[0])}")
    return torch.tensor(rows, dtype=torch.float64)


def number(text: str, key: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise FovealError(f"{key}: {where}: '{text}' is not a number")
    return value


def parse_volume(text: str, key: str = "input", where: str = "") -> torch.Tensor:
    """'A | B | C' -> (C, H, W) float64: channels by `|`, each a parse_matrix."""
    parts = str(text).split("|")
    channels = [parse_matrix(part, key, f"{where}channel {c}, " if len(parts) > 1 else where)
                for c, part in enumerate(parts, 1)]
    for c, channel in enumerate(channels, 1):
        if channel.shape != channels[0].shape:
            raise FovealError(f"{key}: {where}channel {c} is {shape_text(channel)}, "
                              f"channel 1 is {shape_text(channels[0])}")
    return torch.stack(channels)


def parse_filters(text: str, key: str = "kernel") -> torch.Tensor:
    """'F1 / F2' -> (F, C, kh, kw) float64: filters by `/`, each a parse_volume (one matrix per channel)."""
    parts = str(text).split("/")
    filters = [parse_volume(part, key, f"filter {i}, " if len(parts) > 1 else "") for i, part in enumerate(parts, 1)]
    for i, weights in enumerate(filters, 1):
        if weights.shape != filters[0].shape:
            raise FovealError(f"{key}: filter {i} is {shape_text(weights)}, filter 1 is {shape_text(filters[0])}")
    return torch.stack(filters)


def kernel_weights(name: str, ksize: int = 3) -> tuple[np.ndarray, int]:
    """(integer weights, divisor) of a named kernel, which is weights / divisor. box and gaussian (binomial
    weights: the integer Gaussian of image processing) take any odd ksize; the others are 3x3."""
    name = KERNEL_ALIASES.get(name, name)
    if name not in KERNEL_NAMES:
        raise FovealError(f"kernel: unknown kernel '{name}'{did_you_mean(name, [*KERNEL_NAMES, *KERNEL_ALIASES])}; "
                          f"kernels: {', '.join(KERNEL_NAMES)}, or a matrix like 1,0;0,1")
    if name not in SIZED_KERNELS:
        if ksize != 3:
            raise FovealError(f"ksize: only {' and '.join(SIZED_KERNELS)} take a size; {name} is 3x3")
        return np.array(FIXED_KERNELS[name]), 1
    if ksize < 1 or ksize % 2 == 0:
        raise FovealError(f"ksize: expected an odd size >= 1, got {ksize}")
    row = np.array([math.comb(ksize - 1, i) for i in range(ksize)] if name == "gaussian" else [1] * ksize)
    weights = np.outer(row, row)
    return weights, int(weights.sum())


def named_kernel(name: str, ksize: int = 3) -> torch.Tensor:
    """The (ksize, ksize) float64 kernel called `name` (KERNEL_NAMES, or box_blur for box)."""
    weights, divisor = kernel_weights(name, ksize)
    return torch.as_tensor(weights / divisor, dtype=torch.float64)


def conv(input, kernel, stride: int = 1, padding=0, dilation: int = 1, bias=None, flip: bool = False) -> torch.Tensor:
    """What a conv layer computes: cross-correlation; flip=True flips the kernel (true convolution, as
    scipy.signal.convolve2d).

    input: (H, W) or (C, H, W). kernel: (kh, kw); (C, kh, kw), one filter across the channels; or
    (F, C, kh, kw), F filters. A (kh, kw) kernel on C > 1 channels filters each channel on its own.
    padding: an int, 'valid', 'same' (stride 1) or 'full'. bias: a number, or one per output map.
    Returns (Ho, Wo) for one filter, else (F, Ho, Wo), or (C, Ho, Wo) channel by channel; float64
    unless input is a floating-point tensor already (an image's float32).
    """
    x = as_float(input)
    volume = channels_first(x)
    weight = as_float(kernel).to(x.dtype)
    if weight.ndim not in (2, 3, 4):
        raise FovealError(f"kernel: expected (kh, kw), (C, kh, kw) or (F, C, kh, kw), got {tuple(weight.shape)}")
    per_channel = weight.ndim == 2 and len(volume) > 1
    filters = weight.reshape((1,) * (4 - weight.ndim) + tuple(weight.shape))  # (F, C, kh, kw)
    if per_channel:
        filters = filters.repeat(len(volume), 1, 1, 1)  # (C, 1, kh, kw): groups=C
    elif filters.shape[1] != len(volume):
        raise FovealError(f"kernel: each filter has {filters.shape[1]} channel(s), the input has {len(volume)}; "
                          f"give each filter one `|`-separated matrix per channel, or one 2-D kernel for all")
    pads = resolve_padding(padding, filters.shape[2:], dilation, stride)
    for size, taps, pad in zip(volume.shape[1:], filters.shape[2:], pads):
        output_size(size, taps, stride, pad, dilation, exact=False)  # a one-line error where torch would raise
    if flip:
        filters = filters.flip(-2, -1)
    out = F.conv2d(volume[None], filters, bias_per_map(bias, len(filters), x.dtype), stride, pads, dilation,
                   groups=len(volume) if per_channel else 1)[0]
    return out if weight.ndim == 4 or per_channel else out[0]


def resolve_padding(padding, kernel_hw, dilation: int = 1, stride: int = 1) -> tuple[int, int]:
    """(ph, pw) of an int or a name: valid 0, same D(F-1)/2 (the output keeps the input's size), full D(F-1)."""
    extents = [dilation * (int(taps) - 1) for taps in kernel_hw]  # the dilated kernel's reach beyond one pixel
    text = str(padding).strip()
    if text == "valid" or text.lstrip("-").isdigit():
        return (int(text) if text != "valid" else 0,) * 2
    if text == "full":
        return tuple(extents)
    if text != "same":
        raise FovealError(f"padding: expected an integer, same, valid or full, got '{padding}'")
    if stride != 1 or any(extent % 2 for extent in extents):
        raise FovealError("padding: same needs stride=1 and an odd kernel size (it pads D(F-1)/2 on each side)")
    return tuple(extent // 2 for extent in extents)


def bias_per_map(bias, maps: int, dtype) -> torch.Tensor | None:
    if bias is None:
        return None
    values = as_float(bias).to(dtype).reshape(-1)
    if len(values) not in (1, maps):
        raise FovealError(f"bias: {len(values)} values for {maps} output maps; give one per filter")
    return values.expand(maps).contiguous()


def pool(input, size: int = 2, stride: int | None = None, padding: int = 0, mode: str = "max") -> torch.Tensor:
    """Max or average pooling (mode 'max' or 'avg') of (H, W) or (C, H, W), each channel on its own; stride
    defaults to size (windows side by side). Average pooling counts padded zeros, as torch does."""
    if mode not in ("max", "avg"):
        raise FovealError(f"mode: expected max or avg, got '{mode}'")
    x = as_float(input)
    volume = channels_first(x)
    stride = stride or size
    if size < 1:
        raise FovealError(f"size: expected an integer >= 1, got {size}")
    if padding > size // 2:
        raise FovealError(f"padding: at most half the pool size ({size // 2} for size={size}), got {padding}")
    if any(side + 2 * padding < size for side in volume.shape[1:]):
        raise FovealError(f"size: the {size}x{size} window is larger than the padded input {shape_text(x)}")
    for side in volume.shape[1:]:
        output_size(side, size, stride, padding, exact=False)
    pooled = (F.max_pool2d if mode == "max" else F.avg_pool2d)(volume[None], size, stride, padding)[0]
    return pooled if x.ndim == 3 else pooled[0]


def as_float(values) -> torch.Tensor:
    """A float tensor: float64 unless `values` is a floating-point tensor already."""
    if torch.is_tensor(values) and values.is_floating_point():
        return values
    return torch.as_tensor(np.asarray(values), dtype=torch.float64)


def channels_first(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) of an (H, W) or (C, H, W) input."""
    if x.ndim not in (2, 3):
        raise FovealError(f"input: expected (H, W) or (C, H, W), got {tuple(x.shape)}")
    return x if x.ndim == 3 else x[None]


def negative(pixels: np.ndarray) -> np.ndarray:
    """255 - x: the photographic negative of uint8 pixels."""
    return 255 - pixels


def grayscale(pixels: np.ndarray) -> np.ndarray:
    """(H, W) uint8 luma of (H, W, 3) RGB: Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), rounded."""
    return np.clip(np.rint(pixels.astype(np.float64) @ BT601), 0, 255).astype(np.uint8)


def threshold(pixels: np.ndarray, value: int | str = 128) -> tuple[np.ndarray, int]:
    """(black-and-white image, level): pixels of the grayscale above the level become 255, the others 0.
    value: the level 0..255, or 'otsu', the level that best separates two classes (found by OpenCV)."""
    grey = grayscale(pixels)
    if value == "otsu":
        value = int(cv2.threshold(grey, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)[0])
    if not isinstance(value, (int, np.integer)) or not 0 <= value <= 255:
        raise FovealError(f"value: expected an integer 0..255 or otsu, got '{value}'")
    return np.where(grey > value, 255, 0).astype(np.uint8), int(value)


def histogram(pixels: np.ndarray) -> np.ndarray:
    """(256,) pixel counts of each grey level of the grayscale."""
    return np.bincount(grayscale(pixels).ravel(), minlength=256)


# ---- printing -----------------------------------------------------------------------------------

def shape_text(values) -> str:
    """'5x5' for (H, W) or one channel, '5x5x3' for (3, H, W): height x width x depth, as CS231n writes."""
    *depth, height, width = values.shape
    return f"{height}x{width}" + (f"x{depth[-1]}" if depth and depth[-1] > 1 else "")


def format_number(value: float, integral: bool) -> str:
    return f"{int(value)}" if integral else f"{round(value, 4) + 0.0:.4f}"  # + 0.0: no '-0.0000'


def format_matrix(matrix: torch.Tensor) -> str:
    """Rows of right-aligned numbers: integers when every value is integral, else 4 decimals."""
    integral = bool((matrix == matrix.round()).all())
    cells = [[format_number(value, integral) for value in row] for row in matrix.tolist()]
    width = max(len(cell) for row in cells for cell in row)
    return "\n".join(" ".join(cell.rjust(width) for cell in row) for row in cells)


def print_maps(result: torch.Tensor, label: str):
    """An (H, W) result as one matrix, a (maps, H, W) one as matrices named '<label> 1:', '<label> 2:' ..."""
    print(f"output {shape_text(result)}:")
    if result.ndim == 2:
        print(format_matrix(result))
    for i, matrix in enumerate(result if result.ndim == 3 else [], 1):
        print(f"{label} {i}:\n{indent(format_matrix(matrix), '  ')}")


def print_sizes(input_hw, kernel_hw, stride, pads, dilation=1):
    """FORMULA with the numbers: once when both axes agree, else for the height and for the width."""
    rows = [formula(int(n), int(k), stride, p, dilation) for n, k, p in zip(input_hw, kernel_hw, pads)]
    for label, row in zip(["size"] if rows[0] == rows[1] else ["height", "width"], rows):
        print(f"output {label} = {FORMULA} = {row}")


# ---- images in, PNGs out ---------------------------------------------------------------------------

def read_source(source: str) -> tuple[Path, np.ndarray]:
    """(path, (H, W, 3) uint8 pixels) of the one image `source` names, read as every task reads images."""
    paths = resolve_source(source)
    if len(paths) > 1:
        raise FovealError(f"source: {source} holds {len(paths)} images; basics works on one image")
    return paths[0], read_pixels(paths[0])


def to_pixels(values: torch.Tensor, mapping: str) -> np.ndarray:
    """(C, H, W) floats as (H, W, C) uint8 by a MAPPINGS rule."""
    values = values.double()
    if mapping == "abs":
        values = values.abs() * 255 / values.abs().max().clamp(min=1e-12)
    elif mapping == "minmax":
        values = (values - values.min()) * 255 / (values.max() - values.min()).clamp(min=1e-12)
    return values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_pngs(op: str, source: Path, images: list[np.ndarray], project: str, name: str, exist_ok: bool):
    """Write (H, W) or (H, W, 3) uint8 images into a fresh runs/basics/<op>N as <source stem>[_i].png; print where."""
    folder = new_run_dir(project, "basics", name, exist_ok, stem=op)
    for i, pixels in enumerate(images, 1):
        path = folder / (f"{source.stem}.png" if len(images) == 1 else f"{source.stem}_{i}.png")
        pixels = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
        print(f"saved {path}")


# ---- the ops of `foveal basics`: their parameters are the keys, their defaults give the types ----------------

def conv_command(input="", source="", kernel="", stride=1, padding="0", dilation=1, bias="", flip=False, ksize=3,
                 normalize="auto", project="runs", name="", exist_ok=False):
    """convolve a matrix (printed) or an image (saved) with a named or an inline kernel"""
    x, path = input_or_image(input, source)
    if not kernel:
        raise FovealError(f"kernel: name one ({', '.join(KERNEL_NAMES)}) or give a matrix like 1,0;0,1")
    if normalize not in ("auto", *MAPPINGS):
        raise FovealError(f"normalize: expected auto, {', '.join(MAPPINGS)}, got '{normalize}'")
    named = kernel[:1].isalpha()
    if not named and ksize != 3:
        raise FovealError(f"ksize: only for the named kernels {' and '.join(SIZED_KERNELS)}")
    weight = named_kernel(kernel, ksize) if named else inline_kernel(kernel)
    result = conv(x, weight, stride, padding, dilation, parse_matrix(bias, "bias") if bias else None, flip)
    per_channel = weight.ndim == 2 and x.ndim == 3 and len(x) > 1
    print("true convolution: the kernel flipped (flip=true)" if flip
          else "cross-correlation, as a CNN layer computes it (flip=true: true convolution)")
    shape = f"{len(weight)} filters of {shape_text(weight[0])}" if weight.ndim == 4 else shape_text(weight)
    print(f"input {shape_text(x)}{f' ({path})' if path else ''}, kernel {f'{kernel} ' if named else ''}{shape}"
          f"{f', bias {bias}' if bias else ''}"
          f"{f', applied to each of the {len(x)} channels on its own' if per_channel else ''}")
    pads = resolve_padding(padding, weight.shape[-2:], dilation, stride)
    pads_text = f"{pads[0]}" if pads[0] == pads[1] else f"{pads[0]},{pads[1]}"
    print(f"stride {stride}, padding {padding if padding == pads_text else f'{padding} = {pads_text}'}, "
          f"dilation {dilation}")
    print_sizes(x.shape[-2:], weight.shape[-2:], stride, pads, dilation)
    if path is None:
        return print_maps(result, "channel" if per_channel else "filter")
    zero_sum = sums_to_zero(weight)
    mapping = normalize if normalize != "auto" else "abs" if zero_sum else "clip"
    why = f" (auto: the kernel sums to {'0: an edge detector' if zero_sum else 'non-zero'})" * (normalize == "auto")
    print(f"values before mapping: {result.min().item():.4g} .. {result.max().item():.4g}; "
          f"mapped to 0..255: {MAPPINGS[mapping]}{why}")
    maps = result if result.ndim == 3 else result[None]  # (C or F, H, W)
    # a colour image filtered channel by channel stays a colour image; F filters make F grey images
    images = [to_pixels(maps, mapping)] if per_channel or len(maps) == 1 else [to_pixels(m[None], mapping)
                                                                                 for m in maps]
    save_pngs("conv", path, images, project, name, exist_ok)


def sums_to_zero(weight: torch.Tensor) -> bool:
    """Whether every filter's weights sum to 0 (edge detectors: signed answers, 0 on flat regions)."""
    filters = (weight if weight.ndim == 4 else weight[None]).flatten(1)
    return bool((filters.sum(1).abs() <= 1e-9 * filters.abs().sum(1)).all())


def inline_kernel(text: str) -> torch.Tensor:
    """(kh, kw) without `|` and `/`, (C, kh, kw) with `|`, (F, C, kh, kw) with `/`."""
    filters = parse_filters(text)
    return filters if "/" in text else filters[0] if "|" in text else filters[0, 0]


def input_or_image(input: str, source: str) -> tuple[torch.Tensor, Path | None]:
    """The matrix input= gives (float64; (C, H, W) with `|`), or the image source= names as (3, H, W) float32."""
    if bool(input) == bool(source):
        raise FovealError("input: give either input=MATRIX (the result is printed) or source=IMAGE (saved as a PNG)")
    if input:
        volume = parse_volume(input)
        return (volume if "|" in input else volume[0]), None
    path, pixels = read_source(source)
    return torch.from_numpy(pixels).permute(2, 0, 1).float(), path


def pool_command(input="", source="", size=2, stride=0, padding=0, mode="max", project="runs", name="",
                 exist_ok=False):
    """max or average pooling (mode=max|avg) of a matrix or an image; stride=0: the pool size"""
    x, path = input_or_image(input, source)
    result = pool(x, size, stride, padding, mode)
    print(f"{mode} pooling {size}x{size}, stride {stride or size}, padding {padding}, each channel on its own; "
          f"input {shape_text(x)}{f' ({path})' if path else ''}")
    print_sizes(x.shape[-2:], (size, size), stride or size, (padding, padding))
    if path is None:
        return print_maps(result, "channel")
    save_pngs("pool", path, [to_pixels(result, "clip")], project, name, exist_ok)


def size_command(input=0, kernel=0, stride=1, padding=0, dilation=1):
    """the output size of a conv or pooling layer (input=N kernel=F stride=S padding=P dilation=D)"""
    if not input or not kernel:
        raise FovealError(f"{'kernel' if input else 'input'}: give the sizes, e.g. input=227 kernel=11 stride=4")
    result = output_size(input, kernel, stride, padding, dilation)
    print(f"output size = {FORMULA}\n            = {formula(input, kernel, stride, padding, dilation)}")
    return result


def kernels_command(ksize=3):
    """the named kernels and their matrices (ksize=5: box and gaussian at 5x5)"""
    for name in KERNEL_NAMES:
        weights, divisor = kernel_weights(name, ksize if name in SIZED_KERNELS else 3)
        aliases = "".join(f" ({alias})" for alias, target in KERNEL_ALIASES.items() if target == name)
        print(f"{name}{aliases}{f' = 1/{divisor} x' if divisor != 1 else ''}:\n"
              f"{indent(format_matrix(torch.as_tensor(weights)), '  ')}")


def negative_command(source="", project="runs", name="", exist_ok=False):
    """the negative of an image: 255 - x in every channel"""
    path, pixels = read_source(source)
    print(f"negative of {path} ({shape_text(pixels.transpose(2, 0, 1))}): 255 - x in every channel")
    save_pngs("negative", path, [negative(pixels)], project, name, exist_ok)


def grayscale_command(source="", project="runs", name="", exist_ok=False):
    """the grayscale of an image by ITU-R BT.601: Y = 0.299 R + 0.587 G + 0.114 B"""
    path, pixels = read_source(source)
    print(f"grayscale of {path} ({shape_text(pixels.transpose(2, 0, 1))}): "
          "Y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601), rounded")
    save_pngs("grayscale", path, [grayscale(pixels)], project, name, exist_ok)


def threshold_command(source="", value="128", project="runs", name="", exist_ok=False):
    """black and white: grayscale pixels above value=0..255 (or value=otsu) become 255"""
    path, pixels = read_source(source)
    binary, level = threshold(pixels, int(value) if value.strip().isdigit() else value.strip())
    print(f"threshold of {path} at {level}{' (Otsu)' if value == 'otsu' else ''}: BT.601 grayscale above {level} "
          f"-> 255, others 0; {np.count_nonzero(binary)} of {binary.size} pixels white")
    save_pngs("threshold", path, [binary], project, name, exist_ok)


def histogram_command(source="", project="runs", name="", exist_ok=False):
    """the histogram of an image's BT.601 grey levels: a bar plot and printed counts"""
    path, pixels = read_source(source)
    counts = histogram(pixels)
    levels = np.flatnonzero(counts)
    mean = (counts * np.arange(256)).sum() / counts.sum()
    print(f"histogram of {path}: {counts.sum()} pixels, BT.601 grey levels {levels[0]}..{levels[-1]}, "
          f"mean {mean:.1f}, most common {counts.argmax()} ({counts.max()} pixels)")
    for low in range(0, 256, 32):
        print(f"  {low:3d}-{low + 31:3d}: {counts[low:low + 32].sum()}")
    figure = Figure(figsize=(6, 3), layout="constrained")
    FigureCanvasAgg(figure)  # renders savefig without pyplot's global state
    axes = figure.add_subplot()
    axes.bar(np.arange(256), counts, width=1.0, color="0.3")
    axes.set(xlabel="grey level (BT.601)", ylabel="pixels", xlim=(-1, 256), title=path.name)
    folder = new_run_dir(project, "basics", name, exist_ok, stem="histogram")
    saved = atomic_write(folder / f"{path.stem}.png", lambda tmp: figure.savefig(tmp, format="png", dpi=100))
    print(f"saved {saved}")


def help_command():
    """these ops and their keys"""
    print("usage: foveal basics OP [key=value ...]")
    for op, command in COMMANDS.items():
        keys = " ".join(f"{key}={default}" for key, default in keys_of(command).items())
        print(f"  {op:10s} {inspect.getdoc(command)}" + (f"\n  {'':10s} keys: {keys}" if keys else ""))


COMMANDS = {"conv": conv_command, "pool": pool_command, "size": size_command, "kernels": kernels_command,
            "negative": negative_command, "grayscale": grayscale_command, "threshold": threshold_command,
            "histogram": histogram_command, "help": help_command}


def keys_of(command) -> dict:
    return {key: parameter.default for key, parameter in inspect.signature(command).parameters.items()}


def basics(op: str, pairs: dict):
    """`foveal basics OP key=value ...`: check the keys of OP strictly, convert them to its types and run it."""
    if op not in COMMANDS:
        raise FovealError(f"basics: {f'unknown op {op!r}' if op else 'name an op'}{did_you_mean(op, COMMANDS)}; "
                          f"ops: {', '.join(COMMANDS)}")
    defaults = keys_of(COMMANDS[op])
    for key in pairs:
        if key not in defaults:
            raise FovealError(f"unknown key '{key}' for basics {op}{did_you_mean(key, defaults)}; valid keys: "
                              + (", ".join(defaults) or "none"))
    if pairs.get("input") and "source" in defaults and (extra := sorted(IMAGE_ONLY_KEYS & pairs.keys())):
        raise FovealError(f"{extra[0]}: only for source= images; with input= the result is printed")
    return COMMANDS[op](**{key: convert(key, value, type(defaults[key])) for key, value in pairs.items()})
