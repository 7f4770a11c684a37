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
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from ..config import config_dict, save_config
from ..errors import FovealError
from ..files import write_text
from ..registry import get_model_entry
from ..report import drawing
from . import distributed
from .checkpoint import load_state, load_weights, save_train_state, save_weights
from .cores import available_cores
from .device import (ThreadWatch, autocast_dtype, configure_cpu, fp32_where_taps_see_only_padding,
                     make_deterministic, seed_everything, select_device)
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


class Diverged(Exception):
    """The loss or the gradients stayed non-finite: training cannot go on (fit turns it into one line)."""


class StepGuard:
    """Watches every training step for a non-finite loss or gradient. Such a step is skipped (no update) and
    counted; under amp=auto it is redone in fp32 first, and after FALLBACK_AFTER redone steps the run trains
    on in fp32 (the user asked for speed, not for bf16). A loss that stays non-finite for GIVE_UP_AFTER steps
    in a row, or a whole epoch, raises Diverged."""

    FALLBACK_AFTER = 3
    GIVE_UP_AFTER = 20

    def __init__(self, amp: str, amp_dtype, log):
        self.amp_dtype, self.log = amp_dtype, log
        self.can_fall_back = amp == "auto" and amp_dtype is not None
        self.redone = 0  # steps redone in fp32 in the whole run
        self.in_a_row = 0
        self.skipped = 0  # in the current epoch

    def redo_in_fp32(self, epoch: int, step: int) -> bool:
        """Whether a failed low-precision step is to be redone in fp32; switches to fp32 for good after a few."""
        if not self.can_fall_back:
            return False
        self.redone += 1
        if self.redone >= self.FALLBACK_AFTER:
            self.log(f"amp: {dtype_name(self.amp_dtype)} gave a non-finite loss at {self.redone} steps (the last at "
                     f"epoch {epoch}, step {step}); training on in fp32")
            self.amp_dtype, self.can_fall_back = None, False
        return True

    def step_done(self, finite: bool, epoch: int, step: int):
        if finite:
            self.in_a_row = 0
            return
        self.in_a_row += 1
        self.skipped += 1
        if self.in_a_row >= self.GIVE_UP_AFTER:
            raise Diverged(f"the loss has not been finite for {self.in_a_row} steps in a row (epoch {epoch}, "
                           f"step {step})")


def dtype_name(dtype) -> str:
    """amp's name for an autocast dtype: bf16, fp16 or off."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "off"}[dtype]


def train_step(task, model, batch, optimizer, scaler, device, amp_dtype, clip_grad: float, distributed_run: bool):
    """Forward, backward and (if the loss and gradients are finite) the optimizer step; returns the loss terms,
    or None when the step was skipped. A GradScaler (fp16) skips overflowing steps itself: its own business."""
    with autocast(device, amp_dtype):
        loss, items = task.loss(model, batch)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if clip_grad > 0:
        scaler.unscale_(optimizer)
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
    # under DDP the gradients (averaged over the processes) decide alone, so that every process skips together
    finite_loss = distributed_run or math.isfinite(sum(items.values()))
    if scaler.is_enabled():  # fp16: the scaler skips an overflowing step itself, and lowers its scale
        scaler.step(optimizer)
        scaler.update()
        return items if finite_loss else None
    if clip_grad <= 0:  # one pass over the gradients: a few percent of a small model's step
        norm = nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None])
    if not (finite_loss and torch.isfinite(norm)):
        optimizer.zero_grad(set_to_none=True)
        return None
    optimizer.step()
    return items


def train_one_epoch(task, model, loader, optimizer, scheduler, device, guard: StepGuard, scaler, ema,
                    clip_grad: float, progress, epoch: int, distributed_run: bool = False,
                    watch: ThreadWatch | None = None) -> dict[str, float]:
    """One pass over the training data; returns the mean of each loss term over the steps taken."""
    model.train()
    sums, count = {}, 0
    guard.skipped = 0
    for step, batch in enumerate(loader, 1):
        batch = move_to(batch, device)
        items = train_step(task, model, batch, optimizer, scaler, device, guard.amp_dtype, clip_grad, distributed_run)
        if items is None and guard.amp_dtype is not None and guard.redo_in_fp32(epoch, step):
            items = train_step(task, model, batch, optimizer, scaler, device, None, clip_grad, distributed_run)
        guard.step_done(items is not None, epoch, step)
        if watch is not None:
            watch.check(f"epoch {epoch}, step {step}")
        scheduler.step()  # skipped steps too: the schedule keeps its length
        progress.update(1)
        if items is None:
            continue
        if ema is not None:
            ema.update_parameters(model)
        for k, v in items.items():
            sums[k] = sums.get(k, 0.0) + v
        count += 1
        progress.set_postfix({k: f"{v / count:.4f}" for k, v in sums.items()}, refresh=False)
    if not count:
        raise Diverged(f"the loss was not finite at any step of epoch {epoch}")
    return {k: v / count for k, v in sums.items()}


@torch.inference_mode()
def evaluate(task, model, loader, device, progress: str = ""):
    """Run `model` over `loader` and let the task's evaluator score it; `progress`: a bar's label, or none.

    Always in full precision, whatever `amp` trained with: the metrics of an epoch, of the end of
    training and of `val` are then the same numbers on every machine (autocast's choice depends on it).
    The model runs as task.inference_model makes it, in training as in `val`: the same numbers again.
    """
    model = task.inference_model(model.eval())
    evaluator = task.new_evaluator()
    for batch in tqdm(loader, desc=progress, leave=False, disable=not progress or None, dynamic_ncols=True):
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
    run = set_up(task_class, cfg, log, given)
    open_run_folder(run)
    cfg, task, model, dist_info, log, history = run.cfg, run.task, run.model, run.dist_info, run.log, run.history
    train_model = wrap_parallel(model, run.device, dist_info)
    stalled = 0 if run.best_epoch < 0 else len(history) - run.best_epoch
    guard = StepGuard(cfg.amp, run.amp_dtype, log)
    watch = ThreadWatch(max(1, available_cores() - run.workers), run.device.type == "cpu" and not cfg.threads
                        and not dist_info.enabled, log)
    table = EpochTable(task, cfg.epochs, log)
    try:
        for epoch in range(run.start_epoch, cfg.epochs):
            if cfg.freeze and cfg.unfreeze_epoch and epoch == cfg.unfreeze_epoch:
                unfreeze(model)
                train_model = wrap_parallel(model, run.device, dist_info)  # DDP syncs only what needed gradients when wrapped
                log(f"epoch {epoch + 1}: unfreezing all layers")
            torch.manual_seed(epoch_seed(cfg.seed, epoch, dist_info.rank))  # dropout; the data: the loader
            run.train_loader.sampler.set_epoch(epoch, epoch_seed(cfg.seed, epoch, dist_info.rank))
            started = time.perf_counter()
            losses = train_epoch(run, train_model, epoch, guard, watch)
            metrics = validate_epoch(run, epoch)
            row = {"epoch": epoch + 1, **losses, **metrics, "lr": run.optimizer.param_groups[0]["lr"],
                   "seconds": round(time.perf_counter() - started, 3)}
            history.append(row)
            improved = metrics[task.fitness] > run.best_fitness
            if improved:
                run.best_fitness, run.best_epoch, stalled = metrics[task.fitness], epoch + 1, 0
            else:
                stalled += 1
            stopped_early = bool(cfg.patience) and stalled >= cfg.patience and epoch + 1 < cfg.epochs
            table.log_row(row, improved)
            if dist_info.is_main:
                save_epoch(run, epoch, metrics, improved, stopped_early,
                           amp_fell_back=run.amp_dtype is not None and guard.amp_dtype is None)
            if stopped_early:
                log(f"early stop: no better {task.fitness} for {cfg.patience} epochs (best at epoch {run.best_epoch})")
                break
    except Diverged as e:
        distributed.shutdown()
        kept = (f"epoch {len(history)}, the last finished, is kept in {run.run_dir} (resume=RUN continues it)"
                if history else f"no epoch finished ({run.run_dir})")
        raise FovealError(f"training stopped: {e}; {kept}; try amp=off, or a lower lr than {cfg.lr:g}") from None

    result = None
    if dist_info.is_main:
        result = finish(task, run.run_dir, history, run.device, run.val_loader, log)
    distributed.barrier(dist_info)
    distributed.shutdown()
    return result


@dataclass
class Run:
    """What one training run works with, as set_up makes it; resumed, from the epoch it had reached."""
    cfg: object
    task: object
    model: nn.Module
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    plan: list  # the lr schedule's segments (schedule_plan)
    amp_dtype: torch.dtype | None
    device: torch.device
    dist_info: object
    threads: int
    workers: int
    train_loader: object
    val_loader: object
    log: object  # print, or nothing outside the main process or with verbose=false
    start_epoch: int = 0
    history: list = field(default_factory=list)
    best_fitness: float = -math.inf
    best_epoch: int = -1
    resumed: bool = False  # from a saved epoch (a resume= run killed in its first epoch starts afresh)
    run_dir: Path | None = None  # made by open_run_folder, once the input is checked
    weights_meta: dict = field(default_factory=dict)

    @property
    def eval_model(self) -> nn.Module:
        """The weights that are scored and saved: the EMA's where there is one."""
        return self.ema.module if self.ema is not None else self.model


def with_model_defaults(cfg, task: str, given: set[str] | None):
    """(cfg with the model's own training defaults (registry ModelEntry.defaults) for the keys not `given`
    (None: the keys whose value is the config's default), those it took)."""
    defaults = get_model_entry(cfg.model, task).defaults
    if given is None:
        plain = type(cfg)()
        given = {key for key in defaults if getattr(cfg, key) != getattr(plain, key)}
    applied = {key: value for key, value in defaults.items() if key not in given}
    return replace(cfg, **applied), applied


def set_up(task_class, cfg, log, given: set[str] | None) -> Run:
    """Devices, threads, the task, its model, data, optimizer and schedule, and a resume's saved state:
    everything that can refuse the user's input, before the run folder exists."""
    dist_info = distributed.from_environment()
    state, applied = None, {}
    if cfg.resume:
        cfg, state = prepare_resume(cfg, given)  # the saved config has the model's defaults already
    else:
        cfg, applied = with_model_defaults(cfg, task_class.name, given)
    device = select_device(cfg.device, dist_info.local_rank, dist_info.enabled)
    distributed.init(dist_info, device)
    log = log if (dist_info.is_main and cfg.verbose) else (lambda *a, **k: None)
    if applied:
        log(f"{cfg.model} trains with {' '.join(f'{k}={v:g}' for k, v in applied.items())} unless told otherwise")
    threads = configure_cpu(cfg.threads, dist_info.local_world_size, log)
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
    if state is not None and state.get("amp_fell_back") and cfg.amp == "auto":
        amp_dtype = None  # as the run went on before it was stopped
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
    run = Run(cfg, task, model, ema, optimizer, scheduler, scaler, plan, amp_dtype, device, dist_info, threads,
              workers, train_loader, val_loader, log)
    if state is not None:
        load_state(model, state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        restore_scaler(scaler, state["scaler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        run.resumed, run.start_epoch, run.history = True, state["epoch"], state["history"]
        run.best_fitness, run.best_epoch = state["best_fitness"], state["best_epoch"]
    return run


def open_run_folder(run: Run):
    """The input is checked: only now the run folder (a resume's own), its config.yaml and the opening lines."""
    cfg, task, dist_info, log = run.cfg, run.task, run.dist_info, run.log
    if cfg.resume:
        run.run_dir = Path(cfg.resume)
        log(f"resuming {run.run_dir} from epoch {run.start_epoch} of {cfg.epochs}" if run.resumed else
            f"resuming {run.run_dir}: no epoch had been saved whole, starting it again")
    else:
        run.run_dir = distributed.broadcast(new_run_dir(cfg.project, task.name, cfg.name, cfg.exist_ok)
                                            if dist_info.is_main else None, dist_info)
    if dist_info.is_main:
        save_config(cfg, run.run_dir / "config.yaml")
    total, trainable = count_parameters(run.model)
    log(f"{task.name} {cfg.model}: {total:,} parameters ({trainable:,} trainable) on {run.device}"
        f"{f' x{dist_info.world_size} processes' if dist_info.enabled else ''}, {run.threads} thread{'s' if run.threads > 1 else ''}, "
        f"{len(run.train_loader.dataset)} train / {len(run.val_loader.dataset)} val {task.items_name}, amp={dtype_name(run.amp_dtype)}")
    log(f"run folder: {run.run_dir}")
    run.weights_meta = {**task.weights_meta(), "config": config_dict(cfg)}


def train_epoch(run: Run, train_model: nn.Module, epoch: int, guard: StepGuard, watch: ThreadWatch) -> dict:
    """One epoch's training (with its progress bar), its loss terms averaged over the processes."""
    cfg, dist_info = run.cfg, run.dist_info
    steps = len(run.train_loader)
    with tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", leave=False,
              disable=not (dist_info.is_main and cfg.verbose) or None, dynamic_ncols=True) as bar:
        losses = train_one_epoch(run.task, train_model, run.train_loader, run.optimizer, run.scheduler, run.device,
                                 guard, run.scaler, run.ema, cfg.clip_grad, bar, epoch + 1, dist_info.enabled, watch)
    if guard.skipped:
        run.log(f"epoch {epoch + 1}: {guard.skipped} of {steps} steps skipped (non-finite loss or gradients)")
    losses = {f"train_{k}": distributed.average(v, dist_info, run.device) for k, v in losses.items()}
    distributed.check_in_sync(run.model, dist_info, run.device)
    return losses


def validate_epoch(run: Run, epoch: int) -> dict:
    """The val metrics of the epoch's weights (scored on the main process, given to all); Diverged when the
    fitness or the val loss is not finite."""
    metrics = None
    if run.dist_info.is_main:
        show = "val" if run.cfg.verbose else ""
        metrics = evaluate(run.task, run.eval_model, run.val_loader, run.device, show).metrics
    metrics = distributed.broadcast(metrics, run.dist_info)
    if not_finite := [k for k in (run.task.fitness, "val_loss") if not math.isfinite(metrics.get(k, 0.0))]:
        raise Diverged(f"epoch {epoch + 1}'s val {', '.join(f'{k}={metrics[k]}' for k in not_finite)}")
    return metrics


def save_epoch(run: Run, epoch: int, metrics: dict, improved: bool, stopped_early: bool, amp_fell_back: bool):
    """The epoch's files: last (best when improved, epochN every save_period) weights, metrics.csv, and the
    resume state last: a kill at any moment of this save leaves the previous epoch's state, from which this
    epoch is trained again and these files written again."""
    cfg, run_dir = run.cfg, run.run_dir
    meta = {**run.weights_meta, "epoch": epoch + 1, "metrics": metrics}
    eval_state = run.eval_model.state_dict()
    save_weights(run_dir / "last.safetensors", eval_state, meta)
    if improved:
        save_weights(run_dir / "best.safetensors", eval_state, meta)
    if cfg.save_period and (epoch + 1) % cfg.save_period == 0:
        save_weights(run_dir / f"epoch{epoch + 1}.safetensors", eval_state, meta)
    write_metrics_csv(run_dir / "metrics.csv", run.history)
    save_train_state(run_dir / "train_state.pt", {
        "epoch": epoch + 1, "model": run.model.state_dict(), "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(), "scaler": run.scaler.state_dict(),
        "ema": run.ema.state_dict() if run.ema is not None else {}, "history": run.history,
        "best_fitness": run.best_fitness, "best_epoch": run.best_epoch, "config": config_dict(cfg),
        "schedule": run.plan, "stopped_early": stopped_early, "torch_rng": torch.get_rng_state(),
        "amp_fell_back": amp_fell_back})


class EpochTable:
    """The console's epoch lines: a header, then a row per epoch with the figures that matter for the task
    (the training and val loss, Task.epoch_columns, the seconds); metrics.csv keeps every figure."""

    def __init__(self, task, epochs: int, log):
        self.task, self.epochs, self.log = task, epochs, log
        self.columns: list[str] = []
        self.epoch_width = max(5, len(str(epochs)) * 2 + 1)  # "12/30"

    def log_row(self, row: dict, improved: bool):
        if not self.columns:
            wanted = ["train_loss", "val_loss", *(self.task.epoch_columns or (self.task.fitness,)), "lr", "seconds"]
            self.columns = [k for k in wanted if k in row]
            self.widths = [max(len(k), 9) for k in self.columns]
            self.log(f"{'epoch':>{self.epoch_width}} " +
                     " ".join(f"{k:>{w}}" for k, w in zip(self.columns, self.widths)))
        epoch = f"{row['epoch']}/{self.epochs}"
        self.log(f"{epoch:>{self.epoch_width}} " + " ".join(
            f"{row[k]:>{w}.4g}" for k, w in zip(self.columns, self.widths)) + ("  *" if improved else ""))


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
    result = evaluate(task, model, val_loader, device, "val best" if task.cfg.verbose else "")
    with drawing(task.cfg.plots):
        task.write_report(run_dir, history, result, model)
    shown = [k for k in ("val_loss", *(task.epoch_columns or (task.fitness,))) if k in result.metrics]
    log(f"best epoch {meta['epoch']}: " + " ".join(f"{k}={result.metrics[k]:.4g}" for k in shown)
        + f" (every figure: {run_dir / 'metrics.csv'})")
    log(f"report: {run_dir / 'report.html'}")
    return RunResult(run_dir, result.metrics, history, run_dir / "best.safetensors")
