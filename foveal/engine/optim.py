"""Optimizer with sensible parameter groups, and learning-rate schedules with warm-up."""

import math

import torch
from torch import nn

from ..errors import FovealError

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, nn.LocalResponseNorm)


def parameter_groups(model: nn.Module, weight_decay: float, head_prefixes=(), backbone_lr: float = 1.0):
    """Groups by (decay?, head?): no weight decay on biases and norm weights; backbone_lr scales all but the head."""
    groups = {}
    for module_name, module in model.named_modules():
        for name, p in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            decay = 0.0 if (name == "bias" or isinstance(module, NORM_LAYERS) or p.ndim <= 1) else weight_decay
            in_head = any(full.startswith(h) for h in head_prefixes)
            scale = 1.0 if (in_head or not head_prefixes) else backbone_lr
            groups.setdefault((decay, scale), []).append(p)
    return [{"params": ps, "weight_decay": d, "lr_scale": s} for (d, s), ps in groups.items()]


def build_optimizer(model: nn.Module, name: str, lr: float, momentum: float, weight_decay: float,
                    head_prefixes=(), backbone_lr: float = 1.0) -> torch.optim.Optimizer:
    groups = parameter_groups(model, weight_decay, head_prefixes, backbone_lr)
    for g in groups:
        g["lr"] = lr * g["lr_scale"]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=momentum > 0)
    if name == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(momentum, 0.999))
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(momentum, 0.999))
    raise FovealError(f"optimizer: expected sgd, adam or adamw, got '{name}'")


def lr_factor(step: int, total: int, warmup: int, kind: str, lrf: float = 0.01,
              step_size: int = 1, gamma: float = 0.1) -> float:
    """Multiplier of the base lr after `step` of `total` optimizer steps.

    A pure function of (step, total) rather than torch's chained schedulers, so that resuming
    with more epochs only changes `total` and the schedule stays well defined.
    """
    if kind == "onecycle":  # cosine up over the first 30%, then cosine down to lr * lrf / 25
        peak = max(1, int(0.3 * total))
        if step < peak:
            return 0.04 + 0.96 * (1 - math.cos(math.pi * step / peak)) / 2
        t = min(1.0, (step - peak) / max(1, total - peak))
        return lrf / 25 + (1 - lrf / 25) * (1 + math.cos(math.pi * t)) / 2
    warm = min(1.0, (step + 1) / warmup) if warmup > 0 and step < warmup else 1.0
    if kind == "cosine":
        t = min(1.0, max(0, step - warmup) / max(1, total - warmup))
        return warm * (lrf + (1 - lrf) * (1 + math.cos(math.pi * t)) / 2)
    if kind == "step":
        return warm * gamma ** (step // max(1, step_size))
    return warm  # constant


def planned_factor(plan: list[tuple[int, int]], warmup: int, kind: str, lrf: float = 0.01, step_size: int = 1,
                   gamma: float = 0.1):
    """lr multiplier as a function of the step, for a plan of (first step, total steps) segments.

    The first segment is the run's schedule. Resuming with another number of epochs adds a segment:
    from its first step the decaying schedules (cosine, onecycle) go on from the factor reached there
    down to their floor, as a half cosine over the new total. The lr never jumps: a finished run that is
    extended keeps training at its final (lowest) lr; step and constant schedules simply go on.
    """
    floor = lrf / 25 if kind == "onecycle" else lrf

    def factor(step: int, segments: int = len(plan)) -> float:
        value = lr_factor(step, plan[0][1], warmup, kind, lrf, step_size, gamma)
        if kind not in ("cosine", "onecycle"):
            return value
        for i in range(1, segments):
            start, total = plan[i]
            if step < start:
                break
            begin = factor(start, i)  # where the earlier plan had got to
            low = min(floor, begin)
            t = min(1.0, (step - start) / max(1, total - start))
            value = low + (begin - low) * (1 + math.cos(math.pi * t)) / 2
        return value

    return factor


def build_scheduler(optimizer, plan: list[tuple[int, int]], warmup_steps: int, kind: str, lrf: float,
                    step_size: int, gamma: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A LambdaLR stepped once per optimizer step, following `plan` (see planned_factor)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, planned_factor(plan, warmup_steps, kind, lrf, step_size, gamma))
