"""Training speed: foveal's engine against a plain PyTorch loop, on the same model, data and steps.

Per model, on digits with the DataLoader and transforms foveal uses, seconds per optimizer step of:

  plain              forward, cross-entropy, zero_grad, backward, AdamW step: nothing else
  engine             foveal's train_one_epoch on the same loader, model and optimizer, with its
                     scheduler and a silent tqdm: move_to, autocast context, disabled GradScaler,
                     scheduler.step, loss items, progress updates and the check that the loss and
                     gradients are finite (one norm over the gradients) are its per-step overhead
  engine bf16        the engine under CPU autocast to bfloat16 (slow without native bf16)
  channels_last      the engine with the model and images in channels_last memory format
  no flush_denormal  the engine with torch.set_flush_denormal(False) (foveal turns flushing on)
  foveal.train       its epochs after the first: history 'seconds' minus a separately timed
                     evaluate, against plain runs of one epoch just before and just after

Each round runs every variant once from the same seed (weights, batches, augmentations, dropout),
in an order that rotates and reverses between rounds. A ratio is the median over rounds of the two
times within a round, so another process using the CPU slows both sides alike; its quartiles show
the spread. Runs differ by several percent even on an idle machine while a run keeps its speed
throughout, so more rounds narrow a ratio more than more steps do. Goal: engine/plain below 1.05.

Run by hand, never in CI:

    .venv/bin/python benchmarks/train_speed.py
    .venv/bin/python benchmarks/train_speed.py --models cifar_resnet20 --rounds 20 --fit-epochs 0
"""

import argparse
import dataclasses
import os
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

import foveal
from foveal.engine.device import configure_cpu, cpu_has_native_bf16
from foveal.engine.distributed import DistInfo
from foveal.engine.loaders import make_loader
from foveal.engine.optim import build_scheduler
from foveal.engine.trainer import StepGuard, evaluate, train_one_epoch
from foveal.tasks.classify.task import ClassifyConfig, ClassifyTask

SEED = 0
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Variant:
    loop: str  # "plain" or "engine"
    baseline: str = ""  # the variant this one is a ratio to
    amp_dtype: torch.dtype | None = None
    channels_last: bool = False
    flush_denormal: bool = True


VARIANTS = {
    "plain": Variant("plain"),
    "engine": Variant("engine", "plain"),
    "engine bf16": Variant("engine", "engine", amp_dtype=torch.bfloat16),
    "channels_last": Variant("engine", "engine", channels_last=True),
    "no flush_denormal": Variant("engine", "engine", flush_denormal=False),
}


class Setup:
    """One model on the digits data: its tasks (channels_last off and on) and foveal's training loader."""

    def __init__(self, model_name: str, imgsz: int, batch: int):
        self.model_name, self.imgsz = model_name, imgsz
        cfg = ClassifyConfig(data="digits", model=model_name, imgsz=imgsz, batch=batch, workers=0)
        self.tasks = {cl: ClassifyTask(dataclasses.replace(cfg, channels_last=cl)) for cl in (False, True)}
        for task in self.tasks.values():
            task.setup()
        self.loader = make_loader(self.tasks[False], "train", True, cfg, torch.device("cpu"), DistInfo(), 0)
        self.loader.sampler.set_epoch(0, 0)


def batches(loader, steps: int):
    """Exactly `steps` batches, going round the loader as often as needed."""
    while True:
        for batch in loader:
            yield batch
            steps -= 1
            if steps == 0:
                return


def plain_loop(model, data, optimizer):
    model.train()
    for images, targets in data:
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def engine_loop(task, model, data, optimizer, steps: int, amp_dtype):
    """train_one_epoch as fit drives it on a CPU: cosine schedule, GradScaler off, no EMA, silent tqdm."""
    scheduler = build_scheduler(optimizer, [(0, steps)], max(1, steps // 5), "cosine", 0.01, 1, 0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with tqdm(total=steps, disable=True) as progress:
        guard = StepGuard("bf16" if amp_dtype else "off", amp_dtype, print)  # the non-finite check of every step
        train_one_epoch(task, model, data, optimizer, scheduler, CPU, guard, scaler, None, 0.0, progress, epoch=1)


def time_variant(variant: Variant, setup: Setup, steps: int) -> float:
    """Seconds per step of `steps` steps from freshly initialised weights, seeded the same every time."""
    torch.manual_seed(SEED)
    model = foveal.create_model(setup.model_name, num_classes=10, imgsz=setup.imgsz)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(SEED)  # the same augmentations and dropout masks in every variant
    setup.loader.generator.manual_seed(SEED)  # the same batches
    torch.set_flush_denormal(variant.flush_denormal)
    started = time.perf_counter()
    if variant.loop == "plain":
        plain_loop(model, batches(setup.loader, steps), optimizer)
    else:
        engine_loop(setup.tasks[variant.channels_last], model, batches(setup.loader, steps), optimizer, steps,
                    variant.amp_dtype)
    seconds = time.perf_counter() - started
    torch.set_flush_denormal(True)
    return seconds / steps


def measure_variants(setup: Setup, steps: int, rounds: int) -> dict[str, list[float]]:
    """{variant: seconds per step in each round}, every round running all variants."""
    names = list(VARIANTS)
    for name in names:  # warm-up: oneDNN kernel choice, lazy imports, first allocations
        time_variant(VARIANTS[name], setup, min(3, steps))
    times = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in (reversed(order) if r % 2 else order):
            times[name].append(time_variant(VARIANTS[name], setup, steps))
    return times


def measure_fit(setup: Setup, epochs: int, batch: int, threads: int) -> tuple[float, float]:
    """foveal.train's seconds per step after epoch 1 without evaluation, and its ratio to plain runs around it."""
    steps = len(setup.loader)
    plain = [time_variant(VARIANTS["plain"], setup, steps)]
    with tempfile.TemporaryDirectory() as project:
        result = foveal.train("classify", data="digits", model=setup.model_name, epochs=epochs, imgsz=setup.imgsz,
                              batch=batch, amp="off", threads=threads, workers=0, verbose=False, project=project)
    plain.append(time_variant(VARIANTS["plain"], setup, steps))
    task = setup.tasks[False]
    torch.manual_seed(SEED)
    model = foveal.create_model(setup.model_name, num_classes=10, imgsz=setup.imgsz)
    val_loader = make_loader(task, "val", False, task.cfg, CPU, DistInfo(), 0)
    evaluations = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate(task, model, val_loader, CPU)
        evaluations.append(time.perf_counter() - started)
    eval_seconds = statistics.median(evaluations)
    seconds = statistics.median((row["seconds"] - eval_seconds) / steps for row in result.history[1:])
    return seconds, seconds / statistics.mean(plain)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "cifar_resnet20"])
    parser.add_argument("--steps", type=int, default=5, help="training steps per variant per round")
    parser.add_argument("--rounds", type=int, default=10, help="rounds, each running every variant once")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--fit-epochs", type=int, default=3, help="foveal.train epochs (below 2: skip it)")
    return parser.parse_args()


def main():
    args = parse_args()
    threads = configure_cpu(0)  # every core, denormals flushed: what foveal.train does
    print(f"torch {torch.__version__}, {threads} threads, {cpu_name()} (native bf16: "
          f"{'yes' if cpu_has_native_bf16() else 'no'}); digits {args.imgsz}x{args.imgsz}, batch {args.batch}, "
          f"{args.steps} steps x {args.rounds} rounds; load average {os.getloadavg()[0]:.1f}", flush=True)
    rows, overheads = [], {}  # rows: (model, variant, seconds per step, ratios, baseline)
    for model_name in args.models:
        print(f"measuring {model_name} ...", flush=True)
        setup = Setup(model_name, args.imgsz, args.batch)
        times = measure_variants(setup, args.steps, args.rounds)
        for name, variant in VARIANTS.items():
            ratios = [t / b for t, b in zip(times[name], times[variant.baseline])] if variant.baseline else []
            rows.append((model_name, name, statistics.median(times[name]), ratios, variant.baseline))
            if name == "engine":
                overheads[model_name] = statistics.median(ratios) - 1
        if args.fit_epochs > 1:
            seconds, ratio = measure_fit(setup, args.fit_epochs, args.batch, threads)
            rows.append((model_name, "foveal.train", seconds, [ratio], "plain, runs before and after"))

    print(f"\n{'model':<16}{'variant':<19}{'ms/step':>9}{'ratio':>8}{'quartiles':>15}  to")
    for model_name, name, seconds, ratios, baseline in rows:
        ratio = f"{statistics.median(ratios):8.3f}" if ratios else " " * 8
        quartiles = statistics.quantiles(ratios, n=4, method="inclusive") if len(ratios) > 1 else None
        spread = f"{quartiles[0]:.3f}-{quartiles[2]:.3f}" if quartiles else ""
        print(f"{model_name:<16}{name:<19}{seconds * 1000:9.1f}{ratio}{spread:>15}  {baseline}")
    print("\nengine overhead over plain PyTorch (goal: under 5%): "
          + ", ".join(f"{m} {o:+.1%}" for m, o in overheads.items()))


if __name__ == "__main__":
    main()
