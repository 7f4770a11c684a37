"""Training speed: foveal's engine against a plain PyTorch loop, on the same model, data and steps.

For each model, on the digits data with the DataLoader and transforms foveal uses, it times
seconds per optimizer step of:

  plain              forward, cross-entropy, zero_grad, backward, AdamW step: nothing else
  engine             foveal.engine.trainer.train_one_epoch on the same loader, model and optimizer,
                     with foveal's scheduler and a silent tqdm: the engine's per-step overhead
                     (move_to, autocast context, disabled GradScaler, scheduler.step, loss items,
                     progress updates)
  engine bf16        the engine under CPU autocast to bfloat16 (slow on CPUs without native bf16)
  channels_last      the engine with the model and images in channels_last memory format
  no flush_denormal  the engine with torch.set_flush_denormal(False) (foveal turns flushing on)
  foveal.train       an epoch of foveal.train: its history 'seconds' minus a separately timed
                     evaluate, over the epochs after the first; not interleaved with the others

Each round builds every variant from the same seed (same initial weights, batches, augmentations
and dropout masks) and runs them back to back, in an order that rotates and reverses from round
to round. A ratio is the median over rounds of the two variants' times in the same round, so a
process that takes the CPU for a while slows both sides alike. The goal: engine/plain below 1.05.

Run by hand, never in CI:

    .venv/bin/python benchmarks/train_speed.py
    .venv/bin/python benchmarks/train_speed.py --models cifar_resnet20 --steps 30 --rounds 7
"""

import argparse
import dataclasses
import platform
import statistics
import tempfile
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

import foveal
from foveal.engine.device import configure_cpu, cpu_has_native_bf16
from foveal.engine.optim import build_scheduler
from foveal.engine.trainer import evaluate, train_one_epoch
from foveal.tasks.classify import ClassifyConfig, ClassifyTask

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


def batches(loader, steps: int):
    """Exactly `steps` batches, going round the loader as often as needed."""
    while True:
        for batch in loader:
            yield batch
            steps -= 1
            if steps == 0:
                return


def plain_loop(model, batches, optimizer):
    model.train()
    for images, targets in batches:
        loss = F.cross_entropy(model(images), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def engine_loop(task, model, batches, optimizer, steps: int, amp_dtype):
    """train_one_epoch as fit drives it on a CPU: cosine schedule, GradScaler off, no EMA, silent tqdm."""
    scheduler = build_scheduler(optimizer, steps, max(1, steps // 5), "cosine", 0.01, 1, 0.1)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    with tqdm(total=steps, disable=True) as progress:
        train_one_epoch(task, model, batches, optimizer, scheduler, CPU, amp_dtype, scaler, None, 0.0, progress)


def time_variant(variant: Variant, tasks: dict, loader, args, model_name: str, steps: int) -> float:
    """Seconds per step of `steps` steps from freshly initialised weights, seeded the same every time."""
    torch.manual_seed(SEED)
    model = foveal.create_model(model_name, num_classes=10, imgsz=args.imgsz)
    if variant.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    torch.manual_seed(SEED)  # the same augmentations and dropout masks in every variant
    loader.generator.manual_seed(SEED)  # the same batches
    torch.set_flush_denormal(variant.flush_denormal)
    started = time.perf_counter()
    if variant.loop == "plain":
        plain_loop(model, batches(loader, steps), optimizer)
    else:
        engine_loop(tasks[variant.channels_last], model, batches(loader, steps), optimizer, steps,
                    variant.amp_dtype)
    seconds = time.perf_counter() - started
    torch.set_flush_denormal(True)
    return seconds / steps


def measure_variants(args, model_name: str, tasks: dict) -> dict[str, list[float]]:
    """{variant: seconds per step in each round}, rounds interleaving all variants."""
    task = tasks[False]
    loader = DataLoader(task.dataset("train", True), batch_size=args.batch, shuffle=True, num_workers=0,
                        collate_fn=task.collate, drop_last=True, generator=torch.Generator())  # as make_loader
    names = list(VARIANTS)
    for name in names:  # warm-up: allocator, oneDNN kernel selection, lazy imports
        time_variant(VARIANTS[name], tasks, loader, args, model_name, min(3, args.steps))
    times = {name: [] for name in names}
    for r in range(args.rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in (reversed(order) if r % 2 else order):
            times[name].append(time_variant(VARIANTS[name], tasks, loader, args, model_name, args.steps))
    return times


def fit_step_seconds(args, model_name: str, task, threads: int) -> float:
    """Median seconds per step of foveal.train's epochs after the first, evaluation time taken out."""
    with tempfile.TemporaryDirectory() as project:
        result = foveal.train("classify", data="digits", model=model_name, epochs=args.fit_epochs,
                              imgsz=args.imgsz, batch=args.batch, amp="off", threads=threads, workers=0,
                              verbose=False, project=project)
    torch.manual_seed(SEED)
    model = foveal.create_model(model_name, num_classes=10, imgsz=args.imgsz)
    val_loader = DataLoader(task.dataset("val", False), batch_size=args.batch, collate_fn=task.collate)
    evaluations = []
    for _ in range(3):
        started = time.perf_counter()
        evaluate(task, model, val_loader, CPU)
        evaluations.append(time.perf_counter() - started)
    eval_seconds = statistics.median(evaluations)
    steps = len(task.dataset("train", True)) // args.batch  # drop_last
    return statistics.median((row["seconds"] - eval_seconds) / steps for row in result.history[1:])


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["simple_cnn", "cifar_resnet20"])
    parser.add_argument("--steps", type=int, default=10, help="training steps per variant per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds of interleaved variants")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--imgsz", type=int, default=32)
    parser.add_argument("--fit-epochs", type=int, default=3, help="foveal.train epochs (0: skip it)")
    return parser.parse_args()


def main():
    args = parse_args()
    threads = configure_cpu(0)  # every core, denormals flushed: what foveal.train does
    print(f"torch {torch.__version__}, {threads} threads, {cpu_name()} (native bf16: "
          f"{'yes' if cpu_has_native_bf16() else 'no'}); digits {args.imgsz}x{args.imgsz}, batch {args.batch}, "
          f"{args.steps} steps x {args.rounds} rounds")
    rows, overheads = [], {}
    for model_name in args.models:
        print(f"measuring {model_name} ...", flush=True)
        cfg = ClassifyConfig(data="digits", model=model_name, imgsz=args.imgsz, batch=args.batch, workers=0)
        tasks = {cl: ClassifyTask(dataclasses.replace(cfg, channels_last=cl)) for cl in (False, True)}
        for task in tasks.values():
            task.setup()
        times = measure_variants(args, model_name, tasks)
        ratios = {name: statistics.median(t / b for t, b in zip(times[name], times[v.baseline]))
                  for name, v in VARIANTS.items() if v.baseline}
        for name, variant in VARIANTS.items():
            rows.append((model_name, name, statistics.median(times[name]), ratios.get(name), variant.baseline))
        overheads[model_name] = ratios["engine"] - 1
        if args.fit_epochs > 1:
            seconds = fit_step_seconds(args, model_name, tasks[False], threads)
            plain = statistics.median(times["plain"])
            rows.append((model_name, "foveal.train", seconds, seconds / plain, "plain, not interleaved"))

    print(f"\n{'model':<16}{'variant':<19}{'ms/step':>9}{'ratio':>8}  to")
    for model_name, name, seconds, ratio, baseline in rows:
        ratio_text = f"{ratio:8.3f}" if ratio is not None else " " * 8
        print(f"{model_name:<16}{name:<19}{seconds * 1000:9.1f}{ratio_text}  {baseline}")
    print("\nengine overhead over plain PyTorch (goal: under 5%): "
          + ", ".join(f"{m} {o:+.1%}" for m, o in overheads.items()))


if __name__ == "__main__":
    main()
