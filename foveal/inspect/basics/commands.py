"""The ops of `foveal basics`: their parameters are the keys, their defaults give the types."""

import inspect
from pathlib import Path
from textwrap import indent

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ...config import convert
from ...engine.runs import new_run_dir
from ...errors import FovealError, did_you_mean
from ...files import atomic_write
from .images import MAPPINGS, read_source, save_pngs, to_pixels
from .lessons import (ap_command, backprop_command, iou_command, minibatch_command, neuron_command, nms_command,
                      yolo_output_command)
from .ops import (FORMULA, KERNEL_ALIASES, KERNEL_NAMES, SIZED_KERNELS, conv, formula, grayscale, histogram,
                  kernel_weights, named_kernel, negative, output_size, parse_filters, parse_matrix, parse_volume,
                  pool, resolve_padding, shape_text, threshold)
from .printing import format_matrix, print_maps, print_sizes

IMAGE_ONLY_KEYS = {"project", "name", "exist_ok", "normalize"}  # meaningless with input=, which only prints


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
        doc = " ".join(inspect.getdoc(command).split())  # one line, however the docstring wraps
        print(f"  {op:11s} {doc}" + (f"\n  {'':11s} keys: {keys}" if keys else ""))


COMMANDS = {"conv": conv_command, "pool": pool_command, "size": size_command, "kernels": kernels_command,
            "negative": negative_command, "grayscale": grayscale_command, "threshold": threshold_command,
            "histogram": histogram_command, "neuron": neuron_command, "backprop": backprop_command,
            "minibatch": minibatch_command, "iou": iou_command, "nms": nms_command, "ap": ap_command,
            "yolo-output": yolo_output_command, "help": help_command}


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
