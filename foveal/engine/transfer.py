"""Transfer learning: load weights from a local file into a model, find its head, freeze the rest."""

import warnings

from torch import nn

from ..errors import FovealError
from .checkpoint import load_state, load_weights


def head_prefixes(model: nn.Module, num_classes: int) -> list[str]:
    """Name of the classifier head: the last layer with weights whose output size is num_classes."""
    last = None
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(module, (nn.Linear, nn.Conv2d)) and weight is not None and weight.shape[0] == num_classes:
            last = name
    return [last + "."] if last else []


def prefixes_outside_backbone(model: nn.Module, names=("backbone", "encoder")) -> list[str]:
    """Parameter-name prefixes of everything beside the first module called backbone or encoder
    (its siblings): for detectors and segmenters, the part that depends on the classes, which
    pretrained weights of another data set cannot fill and `freeze=backbone` leaves trainable."""
    for name, _ in model.named_modules():
        if name.split(".")[-1] in names:
            parent, _, own = name.rpartition(".")
            owner = model.get_submodule(parent) if parent else model
            prefix = f"{parent}." if parent else ""
            return [f"{prefix}{child}." for child, _ in owner.named_children() if child != own]
    return []


def load_pretrained(model: nn.Module, path, model_name: str, skip_prefixes=()) -> str:
    """Copy the matching tensors of `path` into `model`; the head is skipped when its shape differs.
    Weights of model_name, or of the model named by `model.starts_from` (a segmenter built on a detector).

    Raises when too little matches (weights of another architecture). Returns a one-line summary.
    """
    state, meta = load_weights(path)
    own = model.state_dict()
    state = under_wrapper(state, own)
    if meta.get("model") and meta["model"] not in (model_name, getattr(model, "starts_from", None)):
        raise FovealError(f"pretrained: {path} holds weights for '{meta['model']}', not '{model_name}'")
    matched, skipped_head, mismatched = {}, [], []
    for key, value in state.items():
        if key not in own:
            continue
        if own[key].shape == value.shape:
            matched[key] = value
        elif any(key.startswith(p) for p in skip_prefixes):
            skipped_head.append(key)
        else:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(own[key].shape)}")
    body = [k for k in own if not any(k.startswith(p) for p in skip_prefixes)]
    found = sum(k in matched for k in body)
    if mismatched or found < 0.5 * len(body):
        detail = f"; first mismatch: {mismatched[0]}" if mismatched else ""
        raise FovealError(f"pretrained: {path} does not fit '{model_name}': {found} of {len(body)} "
                          f"tensors match{detail}")
    load_state(model, matched, strict=False)
    note = f"loaded {len(matched)}/{len(own)} tensors from {path}"
    if skipped_head:
        note += f" (head re-initialised for the new classes or joints: {', '.join(sorted(set(k.rsplit('.', 1)[0] for k in skipped_head)))})"
    if found < len(body):
        warnings.warn(f"pretrained: {len(body) - found} backbone tensors were not in {path}")
    return note


WRAPPER_PREFIXES = ("model.", "backbone.")  # torchvision's detectors hold the network as `model`, RT-DETR
# its ImageNet ResNet as `backbone`


def under_wrapper(state: dict, own: dict, prefixes=WRAPPER_PREFIXES) -> dict:
    """A torchvision .pth saved from the bare network, its keys moved under the foveal wrapper that holds
    that network as `model` (torchvision's detectors, segmenters and keypoint detectors) or as `backbone`
    (rtdetr_*'s ResNet: an ImageNet classifier's file); others as they are."""
    if any(key in own for key in state):
        return state
    for prefix in prefixes:
        if any(prefix + key in own for key in state):
            return {prefix + key: value for key, value in state.items()}
    return state


def freeze(model: nn.Module, spec: str, head: list[str]) -> int:
    """Freeze 'backbone' (all but the head) or the first N top-level children; returns the count frozen."""
    if not spec:
        return 0
    if spec == "backbone":
        if not head:
            raise FovealError("freeze: cannot tell this model's head apart; use freeze=N (first N blocks)")
        names = [n for n, _ in model.named_parameters() if not any(n.startswith(h) for h in head)]
    elif spec.isdigit():
        children = [n for n, _ in model.named_children()]
        chosen = tuple(f"{n}." for n in children[: int(spec)])
        names = [n for n, _ in model.named_parameters() if n.startswith(chosen)]
    else:
        raise FovealError(f"freeze: expected 'backbone' or a number of blocks, got '{spec}'")
    params = dict(model.named_parameters())
    for n in names:
        params[n].requires_grad_(False)
    return len(names)


def unfreeze(model: nn.Module):
    for p in model.parameters():
        p.requires_grad_(True)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    total = sum(p.numel() for p in model.parameters())
    return total, sum(p.numel() for p in model.parameters() if p.requires_grad)

