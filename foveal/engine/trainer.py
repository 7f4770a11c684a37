"""The one training engine: `fit` runs any Task; `train_one_epoch` and `evaluate` are the loop.

Resume is exact by construction: every epoch re-seeds the torch RNG and the data order from
(seed, epoch), and each item's augmentation from (seed, epoch, index) (loaders.py), so an epoch re-run
after a kill sees the same batches, augmentations and dropout.
"""

import contextlib
import csv
import io
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..config import config_dict, save_config
from ..files import write_text
from ..report import drawing
from . import distributed
from .checkpoint import load_state, load_weights, save_train_state, save_weights
from .device import (autocast_dtype, configure_cpu, fp32_where_taps_see_only_padding, make_deterministic,
                     seed_everything, select_device)
from .loaders import data_workers, make_loader
from .optim import build_optimizer, build_scheduler
from .resume import prepare_resume
from .runs import new_run_dir
from .transfer import count_parameters, freeze, load_pretrained, unfreeze


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict  # the best weights' val metrics
    history: list[dict]  # one row per epoch, as in metrics.csv
    best: Path


def move_to(batch, device: torch.device):
    """Tensors (in any nesting of lists, tuples and dicts) moved to `device`."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(b, device) for b in batch)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    return batch


def ema_average(decay: float):
    """EMA update for AveragedModel, with decay ramped up so the first updates aren't frozen at init."""

    def update(averaged, current, num_averaged):
        d = decay * (1 - math.exp(-(num_averaged + 1) / 2000))
        return averaged * d + current * (1 - d)

    return update


def autocast(device: torch.device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def train_one_epoch(task, model, loader, optimizer, scheduler, device, amp_dtype, scaler, ema,
                    clip_grad: float, progress) -> dict[str, float]:
    """One pass over the training data; returns the mean of each loss term."""
    model.train()
    sums, count = {}, 0
    for batch in loader:
        batch = move_to(batch, device)
        with autocast(device, amp_dtype):
            loss, items = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if clip_grad > 0:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        if ema is not None:
            ema.update_parameters(model)
        for k, v in items.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        progress.update(1)
        progress.set_postfix({k: f"{v / count:.4f}" for k, v in sums.items()}, refresh=False)
    return {k: v / max(count, 1) for k, v in sums.items()}


@torch.inference_mode()
def evaluate(task, model, loader, device):
    """Run `model` over `loader` and let the task's evaluator score it.

    Always in full precision, whatever `amp` trained with: the metrics of an epoch, of the end of
    training and of `val` are then the same numbers on every machine (autocast's choice depends on it).
    The model runs as task.inference_model makes it, in training as in `val`: the same numbers again.
    """
    model = task.inference_model(model.eval())
    evaluator = task.new_evaluator()
    for batch in loader:
        batch = move_to(batch, device)
        outputs = task.forward_eval(model, batch)
        evaluator.update(outputs, batch)
    return evaluator.compute()


def write_metrics_csv(path: Path, history: list[dict]):
    keys = list(dict.fromkeys(k for row in history for k in row))
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=keys)
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def fit(task_class, cfg, log=print, given: set[str] | None = None) -> RunResult:
    """Train `task_class` as configured by `cfg`, writing the run folder; returns the best result.

    `given`: the keys the user typed (they decide what a resume changes); None: those unlike the default.
    Everything that can refuse the user's input (config, data, model, weights) runs before the run
    folder is made, so a failed start leaves nothing behind.
    """
    dist_info = distributed.from_environment()
    state = None
    if cfg.resume:
        cfg, state = prepare_resume(cfg, given)
    device = select_device(cfg.device, dist_info.local_rank, dist_info.enabled)
    distributed.init(dist_info, device)
    log = log if (dist_info.is_main and cfg.verbose) else (lambda *a, **k: None)
    threads = configure_cpu(cfg.threads, dist_info.local_world_size)
    make_deterministic(cfg.deterministic)
    seed_everything(cfg.seed)
    task = task_class.create(cfg)
    task.setup()
    model = task.build_model()
    head = task.head(model)
    if cfg.pretrained and state is None:
        log(load_pretrained(model, cfg.pretrained, cfg.model, skip_prefixes=head))
    if cfg.freeze and (state is None or state["epoch"] < cfg.unfreeze_epoch or not cfg.unfreeze_epoch):
        freeze(model, cfg.freeze, head)
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    amp_dtype = autocast_dtype(cfg.amp, device)
    if amp_dtype is not None:
        fp32_where_taps_see_only_padding(model)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    ema = AveragedModel(model, avg_fn=ema_average(cfg.ema_decay), use_buffers=True) if cfg.ema else None

    workers = data_workers(cfg, task, dist_info, device)
    if device.type == "cpu" and workers and not cfg.threads:  # the workers' cores are not torch's
        threads = configure_cpu(max(1, threads - workers))
    train_loader = make_loader(task, "train", True, cfg, device, dist_info, workers)
    val_loader = make_loader(task, "val", False, cfg, device, dist_info, workers)
    steps_per_epoch = len(train_loader)
    plan = schedule_plan(state, cfg.epochs * steps_per_epoch, steps_per_epoch)
    optimizer = build_optimizer(model, cfg.optimizer, cfg.lr, cfg.momentum, cfg.weight_decay, head, cfg.backbone_lr)
    scheduler = build_scheduler(optimizer, plan, round(cfg.warmup_epochs * steps_per_epoch),
                                cfg.scheduler, cfg.lrf, cfg.step_epochs * steps_per_epoch, cfg.gamma)

    start_epoch, history, best_fitness, best_epoch = 0, [], -math.inf, -1
    if state is not None:
        load_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_scaler(scaler, state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        start_epoch, history = state["epoch"], state["history"]
        best_fitness, best_epoch = state["best_fitness"], state["best_epoch"]

    # the input is checked: only now the run folder
    if state is not None:
        run_dir = Path(cfg.resume)
        log(f"resuming {run_dir} from epoch {start_epoch} of {cfg.epochs}")
    else:
        run_dir = distributed.broadcast(new_run_dir(cfg.project, task.name, cfg.name, cfg.exist_ok)
                                        if dist_info.is_main else None, dist_info)
    if dist_info.is_main:
        save_config(cfg, run_dir / "config.yaml")

    train_model = wrap_parallel(model, device, dist_info)
    total, trainable = count_parameters(model)
    log(f"{task.name} {cfg.model}: {total:,} parameters ({trainable:,} trainable) on {device}"
        f"{f' x{dist_info.world_size} processes' if dist_info.enabled else ''}, {threads} threads, "
        f"{len(train_loader.dataset)} train / {len(val_loader.dataset)} val images, amp={amp_dtype or 'off'}")
    log(f"run folder: {run_dir}")

    weights_meta = {**task.weights_meta(), "config": config_dict(cfg)}
    stalled = 0 if best_epoch < 0 else len(history) - best_epoch
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs):
        if cfg.freeze and cfg.unfreeze_epoch and epoch == cfg.unfreeze_epoch:
            unfreeze(model)
            train_model = wrap_parallel(model, device, dist_info)  # DDP syncs only what needed gradients when wrapped
            log(f"epoch {epoch + 1}: unfreezing all layers")
        torch.manual_seed(epoch_seed(cfg.seed, epoch, dist_info.rank))  # dropout; the data: the loader
        train_loader.sampler.set_epoch(epoch, epoch_seed(cfg.seed, epoch, dist_info.rank))
        started = time.perf_counter()
        with tqdm(total=steps_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
                  disable=not (dist_info.is_main and cfg.verbose) or None, dynamic_ncols=True) as bar:
            losses = train_one_epoch(task, train_model, train_loader, optimizer, scheduler, device,
                                     amp_dtype, scaler, ema, cfg.clip_grad, bar)
        losses = {f"train_{k}": distributed.average(v, dist_info, device) for k, v in losses.items()}
        distributed.check_in_sync(model, dist_info, device)
        eval_model = ema.module if ema is not None else model
        metrics = None
        if dist_info.is_main:
            metrics = evaluate(task, eval_model, val_loader, device).metrics
        metrics = distributed.broadcast(metrics, dist_info)
        row = {"epoch": epoch + 1, **losses, **metrics, "lr": optimizer.param_groups[0]["lr"],
               "seconds": round(time.perf_counter() - started, 3)}
        history.append(row)
        improved = metrics[task.fitness] > best_fitness
        if improved:
            best_fitness, best_epoch, stalled = metrics[task.fitness], epoch + 1, 0
        else:
            stalled += 1
        stopped_early = bool(cfg.patience) and stalled >= cfg.patience and epoch + 1 < cfg.epochs
        log(f"epoch {epoch + 1}/{cfg.epochs} " + " ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "epoch") + (" *" if improved else ""))
        if dist_info.is_main:
            meta = {**weights_meta, "epoch": epoch + 1, "metrics": metrics}
            eval_state = eval_model.state_dict()
            save_weights(run_dir / "last.safetensors", eval_state, meta)
            if improved:
                save_weights(run_dir / "best.safetensors", eval_state, meta)
            if cfg.save_period and (epoch + 1) % cfg.save_period == 0:
                save_weights(run_dir / f"epoch{epoch + 1}.safetensors", eval_state, meta)
            write_metrics_csv(run_dir / "metrics.csv", history)
            save_train_state(run_dir / "train_state.pt", {
                "epoch": epoch + 1, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                "ema": ema.state_dict() if ema is not None else {}, "history": history,
                "best_fitness": best_fitness, "best_epoch": best_epoch, "config": config_dict(cfg),
                "schedule": plan, "stopped_early": stopped_early, "torch_rng": torch.get_rng_state()})
        if stopped_early:
            log(f"early stop: no better {task.fitness} for {cfg.patience} epochs (best at epoch {best_epoch})")
            break

    result = None
    if dist_info.is_main:
        result = finish(task, run_dir, history, device, val_loader, log)
    distributed.barrier(dist_info)
    distributed.shutdown()
    return result


def epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """The RNG seed of one epoch in one process: a resumed epoch sees the same batches, augmentation and
    dropout; the rank is mixed in so that processes augment differently (the sampler splits the data)."""
    return seed * 100_003 + epoch + 1_000_003 * rank


def restore_scaler(scaler: torch.amp.GradScaler, saved: dict):
    """Load a saved GradScaler state where there is one to load: a run made without fp16 (on a CPU, or
    in bf16) saved none, and resuming it where fp16 is chosen starts a fresh scaler."""
    if saved and scaler.is_enabled():
        scaler.load_state_dict(saved)


def wrap_parallel(model: nn.Module, device: torch.device, dist_info) -> nn.Module:
    """The model as the training step sees it: wrapped in DDP under torchrun, else itself."""
    if not dist_info.enabled:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def schedule_plan(state: dict | None, total_steps: int, steps_per_epoch: int) -> list[tuple[int, int]]:
    """The lr schedule's (first step, total steps) segments (optim.planned_factor): the saved plan,
    plus a segment from the resume point when the number of epochs changed."""
    if state is None:
        return [(0, total_steps)]
    plan = [tuple(segment) for segment in state.get("schedule") or
            [(0, state["config"]["epochs"] * steps_per_epoch)]]
    if plan[-1][1] != total_steps:
        plan.append((state["epoch"] * steps_per_epoch, total_steps))
    return plan


def finish(task, run_dir: Path, history: list[dict], device, val_loader, log) -> RunResult:
    """Score best.safetensors on val again (as `val` will) and write the report."""
    state, meta = load_weights(run_dir / "best.safetensors")
    model = task.build_model()
    load_state(model, state)
    model.to(device)
    if task.cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    result = evaluate(task, model, val_loader, device)
    with drawing(task.cfg.plots):
        task.write_report(run_dir, history, result, model)
    log(f"best epoch {meta['epoch']}: " + " ".join(f"{k}={v:.4g}" for k, v in result.metrics.items()))
    log(f"report: {run_dir / 'report.html'}")
    return RunResult(run_dir, result.metrics, history, run_dir / "best.safetensors")
