"""Which layers `features` shows and `explain` weighs: found from the output shapes of one forward pass.

A stage of a CNN is a run of layers at one resolution; its end is the last module whose output comes
before the resolution drops. One rule, `stage_ends`, finds them in any model (ResNet's layer1..layer4,
a U-Net's encoder levels, YOLO's backbone stages) from the order in which module calls finish: a
container finishes after its children, so the outermost module of a stage is the one named.
"""

from typing import Callable, NamedTuple

import torch
from torch import nn

from ..errors import FovealError, did_you_mean

# the bottom-up feature network inside a detector or segmenter (torchvision's FPN backbones keep it in .body)
FEATURE_NETWORKS = ("backbone", "encoder")


class Call(NamedTuple):
    name: str  # the module's name in model.named_modules()
    module: nn.Module
    shape: tuple[int, ...]  # (B, C, H, W) of the output


def trace_calls(model: nn.Module, forward: Callable[[], object]) -> list[Call]:
    """Every call of a named module of `model` that returns a 4-D tensor, in the order the calls end,
    during forward() (run without gradients)."""
    calls = []

    def record(name):
        def hook(module, inputs, output):
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                calls.append(Call(name, module, tuple(output.shape)))
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in model.named_modules() if name]
    try:
        with torch.no_grad():
            forward()
    finally:
        for handle in handles:
            handle.remove()
    return calls


def stage_ends(calls: list[Call]) -> list[Call]:
    """The end of each stage of the bottom-up path: calls followed by a call of smaller spatial size, and
    the last call before the first that grows (a top-down path, a decoder) or before the end.

    1 x 1 outputs (global pooling, squeeze-excitation) are no stage; a module called twice counts once.
    A container of several stages (a Sequential of all of them) gives way to its last child."""
    spatial = [c for c in calls if c.shape[2] * c.shape[3] > 1]
    ends = []
    for k, call in enumerate(spatial):
        area = call.shape[2] * call.shape[3]
        following = spatial[k + 1].shape[2] * spatial[k + 1].shape[3] if k + 1 < len(spatial) else 0
        if following > area or following < area:
            ends.append(k)
        if following > area:  # the path climbs back up: what follows is no longer bottom-up
            break
    for n, k in enumerate(ends):
        # the call that ends just before a container is its last child, with the same output
        while any(spatial[j].name.startswith(spatial[k].name + ".") for j in ends[:n]) and k > 0 \
                and spatial[k - 1].name.startswith(spatial[k].name + ".") and spatial[k - 1].shape == spatial[k].shape:
            k -= 1
        ends[n] = k
    seen, unique = set(), []
    for call in (spatial[k] for k in ends):
        if call.name not in seen:
            seen.add(call.name)
            unique.append(call)
    return unique


def feature_network(model: nn.Module) -> str:
    """Name prefix of the bottom-up network inside `model` ('' for a classifier: the whole model): the
    shallowest module named backbone or encoder, or its `body` when it has one (an FPN backbone)."""
    names = [name for name, _ in model.named_modules() if name.rsplit(".", 1)[-1] in FEATURE_NETWORKS]
    if not names:
        return ""
    name = min(names, key=lambda n: n.count("."))
    body = f"{name}.body"
    return body if body in dict(model.named_modules()) else name


def feature_stage_ends(model: nn.Module, calls: list[Call]) -> list[Call]:
    """The stage ends of the bottom-up feature network of `model` (features' layers=auto): an FPN's
    top-down path, which starts at the backbone's smallest map, is no stage of it."""
    prefix = feature_network(model)
    return stage_ends([c for c in calls if not prefix or c.name == prefix or c.name.startswith(prefix + ".")])


def auto_target_layer(model: nn.Module, calls: list[Call]) -> Call:
    """The layer a CAM weighs by default: the last stage end of the bottom-up feature network, i.e. the
    last conv stage before the head (a classifier's global pooling, a detector's neck, a decoder)."""
    ends = feature_stage_ends(model, calls)
    if not ends:
        raise FovealError("target_layer: this model has no layer with a spatial (B, C, H, W) output to weigh; "
                          "name one with target_layer=")
    return ends[-1]


def named_layers(calls: list[Call], spec: str, key: str) -> list[Call]:
    """The calls of the comma-separated module names in `spec` (the first call of each), or a one-line
    error naming a few layers that do have a spatial output."""
    by_name = {}
    for call in calls:
        by_name.setdefault(call.name, call)
    chosen = []
    for name in filter(None, (part.strip() for part in spec.split(","))):
        if name not in by_name:
            examples = [c.name for c in stage_ends(calls)] or list(by_name)[:6]
            raise FovealError(f"{key}: no layer '{name}' with a (B, C, H, W) output{did_you_mean(name, by_name)}; "
                              f"e.g. {', '.join(examples[:8])}")
        chosen.append(by_name[name])
    if not chosen:
        raise FovealError(f"{key}: name at least one layer, or auto")
    return chosen


def first_conv(calls: list[Call]) -> nn.Conv2d | None:
    """The first 2-D convolution the input meets (its filters look at pixels)."""
    return next((c.module for c in calls if isinstance(c.module, nn.Conv2d)), None)
