"""The Python API of `foveal basics`: pure functions on tensors and arrays (output sizes, convolution,
pooling, named kernels, negative, grayscale, threshold, histogram)."""

import math
import re

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ...errors import FovealError, did_you_mean

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


def shape_text(values) -> str:
    """'5x5' for (H, W) or one channel, '5x5x3' for (3, H, W): height x width x depth, as CS231n writes."""
    *depth, height, width = values.shape
    return f"{height}x{width}" + (f"x{depth[-1]}" if depth and depth[-1] > 1 else "")


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
        raise FovealError(f"{key}: {f'{where}: ' if where else ''}'{text}' is not a number")
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
