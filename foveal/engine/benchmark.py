"""The `benchmark` mode of every task: trained weights in each format, side by side (as `yolo benchmark`).

For each format (PyTorch eager, the model `val` and `predict` run; ONNX, the file `export` writes with the
same keys, run by onnxruntime exactly as `val` and `predict` run an .onnx file; with int8=true also the
int8 export) one row:

- the split's metrics as `val` scores that format (the task's fitness, and its 50-IoU variant for AP),
  so a user sees that the export kept the accuracy;
- the latency of `predict` at batch 1: the task's Predictor.infer on the split's images, decoded before
  timing, `runs` timed calls after a warm-up; p50, p95, and the mean preprocess / inference /
  postprocess split the Predictor records (semantic segmentation records none);
- the throughput at `batch`: the model as `val` calls it (forward and post-processing) on a batch of the
  split's images letterboxed to imgsz x imgsz. A fixed graph (export's default) takes one image at a
  time, so its throughput is one image after another; with dynamic=true the graph takes the batch whole.

ONNX runs at the size asked (imgsz=, else the trained size), and so does PyTorch, so both see the same
pixels. OpenVINO is not measured: importing it sends a usage event unless the user opted out (README). An export that fails is a row with its
error; the PyTorch row is the baseline and a failure there stops the benchmark.
"""

import csv
import importlib.util
import io
import math
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from ..errors import FovealError
from ..files import write_json, write_text
from .checkpoint import load_trained, trained_meta
from .contract import PHASES
from .device import configure_cpu, select_device
from .modes import export, score_split, square_batch, use_inference_options
from .runs import new_run_dir

WARMUP = 5  # untimed calls first: the first ones allocate (onnxruntime's arena, torch's caches)
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
COLUMNS = ("p50_ms", "p95_ms", "mean_ms", *(f"{name}_ms" for name in PHASES), "throughput", "speedup")


def benchmark(task_class, cfg, log=print) -> list[dict]:
    """Measure cfg.weights (.safetensors) in each format; writes runs/<task>/benchmarkN with benchmark.csv
    and benchmark.json, and returns the rows."""
    if Path(cfg.weights).suffix == ".onnx":
        raise FovealError(f"weights: benchmark compares PyTorch with its export: name the .safetensors "
                          f"{cfg.weights} came from, e.g. {Path(cfg.weights).with_suffix('.safetensors')}")
    meta = trained_meta(cfg.weights, task_class.name)
    imgsz = cfg.imgsz or meta["imgsz"]
    device = select_device(cfg.device)
    threads = configure_cpu(cfg.threads, log=log if cfg.verbose else None)
    rows = [{"format": "pytorch", **measure(task_class, cfg, cfg.weights, imgsz, device)}]
    notes = []
    if missing := [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]:
        notes.append(f"onnx: not measured, {', '.join(missing)} missing: pip install 'foveal[deploy]'")
    else:
        rows.append({"format": "onnx", **onnx_row(task_class, replace(cfg, int8=False), imgsz, device)})
        if cfg.int8:
            rows.append({"format": "onnx-int8", **onnx_row(task_class, cfg, imgsz, device)})
    baseline = rows[0]["p50_ms"]
    for row in rows:
        if "p50_ms" in row:
            row["speedup"] = baseline / row["p50_ms"]
    run_dir = new_run_dir(cfg.project, task_class.name, cfg.name, cfg.exist_ok, stem="benchmark")
    setting = {"task": task_class.name, "model": meta["model"], "weights": str(cfg.weights), "imgsz": imgsz,
               "batch": cfg.batch, "runs": cfg.runs, "device": str(device), "threads": threads,
               "dynamic": cfg.dynamic}
    write_json(run_dir / "benchmark.json", {**setting, "rows": rows, "notes": notes})
    write_text(run_dir / "benchmark.csv", rows_csv(rows))
    if cfg.verbose:
        log(f"{meta['model']} {task_class.info_input(meta['model_kwargs'], imgsz)[1]} on {device} ({threads} threads), "
            f"latency at batch 1 over "
            f"{cfg.runs} runs, throughput at batch {cfg.batch}")
        log(format_table(rows))
        for note in notes:
            log(note)
        log(f"results: {run_dir}")
    return rows


def onnx_row(task_class, cfg, imgsz: int, device) -> dict:
    """The ONNX row: what `export` writes with these keys, into a temporary folder, then measured."""
    try:
        with tempfile.TemporaryDirectory(prefix="foveal-benchmark-") as folder:
            # export writes beside its weights: a copy of them keeps the user's folder as it was
            weights = Path(folder) / Path(cfg.weights).name
            shutil.copyfile(cfg.weights, weights)
            started = time.perf_counter()
            path = export(task_class, replace(cfg, weights=str(weights), imgsz=imgsz, verbose=False))
            seconds = time.perf_counter() - started
            return {**measure(task_class, cfg, path, imgsz, device), "export_s": seconds}
    except Exception as e:  # an export that fails (an operator, a guard, a missing runtime) is a row, not a crash
        first = (str(e).strip().splitlines() or [""])[0]
        return {"error": first if isinstance(e, FovealError) else f"{type(e).__name__}: {first}"}


def measure(task_class, cfg, weights, imgsz: int, device) -> dict:
    """Size, the split's metrics, batch-1 latency and batch throughput of one weights file at `imgsz`."""
    model, meta = load_trained(weights, task_class.name, device)
    meta = {**meta, "imgsz": imgsz}  # .safetensors weights run at the size asked, as their export does
    task = task_class.trained(cfg, meta)
    task.setup()
    use_inference_options(task, model, "val")
    metrics = score_split(task, model, device).metrics
    use_inference_options(task, model, "predict")
    runnable = task.inference_model(model)
    latency = time_latency(task.predictor(runnable, device), task.frames(task.eval_split, cfg.runs), cfg.runs, device)
    images = square_batch(task, cfg.batch, device)
    shown = {key: metrics[key] for key in (task.fitness, f"{task.fitness}50") if key in metrics}
    return {"size_mb": Path(weights).stat().st_size / 1e6, **shown, **latency,
            "throughput": time_throughput(task, runnable, images, cfg.batch, cfg.runs, device)}


def synchronize(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_latency(predictor, frames: list[np.ndarray], runs: int, device) -> dict:
    """p50, p95 and mean ms of predictor.infer over `runs` frames (cycling), and the mean ms of each phase
    (None where the predictor times no phases)."""
    for k in range(WARMUP):
        predictor.infer(frames[k % len(frames)])
    predictor.seconds = dict.fromkeys(PHASES, 0.0)
    times = []
    for k in range(runs):
        started = time.perf_counter()
        predictor.infer(frames[k % len(frames)])
        synchronize(device)
        times.append(1000 * (time.perf_counter() - started))
    split = {f"{name}_ms": 1000 * seconds / runs if any(predictor.seconds.values()) else None
             for name, seconds in predictor.seconds.items()}
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "mean_ms": float(np.mean(times)), **split}


@torch.inference_mode()
def time_throughput(task, model, batch, size: int, runs: int, device) -> float:
    """Images per second of task.forward_eval on `batch` (of `size` images); about `runs` images timed,
    at least two batches, after one untimed batch."""
    task.forward_eval(model, batch)
    repeats = max(2, math.ceil(runs / size))
    synchronize(device)
    started = time.perf_counter()
    for _ in range(repeats):
        task.forward_eval(model, batch)
    synchronize(device)
    return repeats * size / (time.perf_counter() - started)


def metric_keys(rows: list[dict]) -> list[str]:
    """The metric columns, in the order the rows have them (between size_mb and the timings)."""
    keys = [key for row in rows for key in row if key not in ("format", "size_mb", "error", "export_s", *COLUMNS)]
    return list(dict.fromkeys(keys))


def rows_csv(rows: list[dict]) -> str:
    fields = ["format", "size_mb", *metric_keys(rows), *COLUMNS, "export_s", "error"]
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def format_table(rows: list[dict]) -> str:
    """format, size, metrics, p50/p95, the phase split, throughput and speed-up: one line per format."""
    metrics = metric_keys(rows)
    header = ["format", "size MB", *metrics, "p50 ms", "p95 ms", "pre/inf/post ms", "img/s", "speed-up"]
    lines = []
    for row in rows:
        if "error" in row:
            lines.append([row["format"], f"error: {row['error']}"])
            continue
        split = "/".join(f"{row[f'{name}_ms']:.2f}" for name in PHASES) if row["preprocess_ms"] is not None else "-"
        lines.append([row["format"], f"{row['size_mb']:.1f}", *(f"{row[key]:.4f}" for key in metrics),
                      f"{row['p50_ms']:.2f}", f"{row['p95_ms']:.2f}", split, f"{row['throughput']:.1f}",
                      f"{row['speedup']:.2f}x"])
    widths = [max(len(line[k]) for line in [header, *lines] if k < len(line)) for k in range(len(header))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip()
                     for line in [header, *lines])
