"""The `val`, `predict` and `export` modes of every task (`info` is inspect/info.py).

A task supplies only what differs (its data and evaluator for val, a Predictor for predict); device,
threads, weights, the input checks and the run folder are handled here once.
"""

from functools import partial
from pathlib import Path

import torch

from ..data.stream import is_stream
from ..errors import FovealError
from ..files import write_json
from ..report import counted, drawing, text_table
from .checkpoint import load_trained
from .cores import available_cores
from .device import ThreadWatch, configure_cpu, select_device
from .distributed import DistInfo
from .runs import new_run_dir
from .stream import predicted_frames, run_stream
from .loaders import data_workers, make_loader
from .results import Results
from .trainer import evaluate, move_to

CALIBRATION_IMAGES = 32  # int8 export: the images whose activations set the quantization ranges


def trained_task(task_class, cfg, mode: str, log=None):
    """(task configured from the weights' metadata, model in eval mode, metadata, device); `log` hears of a
    busy machine's thread choice."""
    device = select_device(cfg.device)
    configure_cpu(cfg.threads, log=log)
    model, meta = load_trained(cfg.weights, task_class.name, device)
    task = task_class.trained(cfg, meta)
    use_inference_options(task, model, mode)
    return task, model, meta, device


def use_inference_options(task, model, mode: str):
    """Set the model's post-processing attributes for `mode`: a detector's conf is 0.001 in val, 0.25 in predict."""
    for key, value in task.inference_options(mode).items():
        setattr(model, key, value)


def score_split(task, model, device):
    """The EvalResult of `model` on the split `val` scores: cfg.split, but data given as one set (a COCO
    file, a class folder) is scored whole, whatever split= says."""
    cfg, splits = task.cfg, task.data.splits
    task.eval_split = cfg.split if cfg.split in splits or len(splits) != 1 else next(iter(splits))
    loader = make_loader(task, task.eval_split, False, cfg, device, DistInfo(), data_workers(cfg, task, DistInfo(), device))
    return evaluate(task, model, loader, device)


def validate(task_class, cfg, log=print):
    """Score trained weights on cfg.split; writes runs/<task>/valN with metrics.json and report.html."""
    task, model, meta, device = trained_task(task_class, cfg, "val", log if cfg.verbose else None)
    task.setup()
    cfg = task.cfg
    result = score_split(task, model, device)
    run_dir = new_run_dir(cfg.project, task.name, cfg.name, cfg.exist_ok, stem="val")
    write_json(run_dir / "metrics.json", result.metrics)
    with drawing(cfg.plots):
        task.write_report(run_dir, [], result, model)
    if cfg.verbose:
        log(" ".join(f"{k}={v:.4f}" for k, v in result.metrics.items()))
        if (table := task.per_class_table(result)) is not None:
            log(text_table(table))
        log(f"report: {run_dir / 'report.html'}")
    return result


def open_predictor(task_class, cfg, frames=None, writes: bool = True, log=print):
    """(task, Predictor, its frames, run folder or None): cfg.source opened (or `frames`, the Python API's
    arrays, taken) and the options checked before the run folder exists: bad input leaves nothing behind.
    Without `writes` no run folder is made and the predictor writes nothing."""
    task, model, meta, device = trained_task(task_class, cfg, "predict", log if cfg.verbose else None)
    if frames is not None and task.input_name != "image":
        raise FovealError(f"source: {task.name} predicts from its data (data=), not from images or arrays")
    source = task.predict_source() if frames is None else frames
    predictor = task.predictor(task.inference_model(model), device)
    run_dir = new_run_dir(cfg.project, task.name, cfg.name, cfg.exist_ok, stem="predict") if writes else None
    predictor.run_dir = run_dir
    return task, predictor, source, run_dir


def log_predicted(task, predictor, count: int, seconds: float, interrupted: bool, summary: str, run_dir, log,
                  frames: bool = False):
    """The last lines of predict (and track, whose inputs are `frames`): counts, speed, time per phase."""
    speed = f", {count / seconds:.1f} {task.speed_unit} (model and post-processing)" if seconds else ""
    frames = frames or isinstance(task.cfg.source, str) and is_stream(task.cfg.source) and task.input_name == "image"
    inputs = counted(count, "frame") if frames else counted(count, task.input_name, task.inputs)
    log(f"{'interrupted after ' if interrupted else ''}{inputs}, {summary}{speed}")
    if count and any(predictor.seconds.values()):
        log(f"per {'frame' if frames else task.input_name}: " +
            ", ".join(f"{1000 * t / count:.1f} ms {name}" for name, t in predictor.seconds.items()))
    if run_dir is not None:
        log(f"results: {run_dir}")


def predict(task_class, cfg, log=print) -> list[dict]:
    """Run trained weights over cfg.source (images, folders, globs, videos, cameras); writes
    runs/<task>/predictN with predictions.json and, with save=true, annotated images or video."""
    task, predictor, source, run_dir = open_predictor(task_class, cfg, log=log)
    count, seconds, interrupted = run_stream(source, run_dir, predictor.infer, predictor.annotate,
                                             predictor.results, cfg.save, cfg.verbose, log, task.input_name,
                                             thread_watch(predictor, cfg, log))
    summary = predictor.finish()
    if cfg.verbose:
        log_predicted(task, predictor, count, seconds, interrupted, summary, run_dir, log)
    return predictor.results


def thread_watch(predictor, cfg, log):
    """What predict calls before each frame: a long video or camera stream follows the free cores too."""
    watch = ThreadWatch(available_cores(), predictor.device.type == "cpu" and not cfg.threads,
                        log if cfg.verbose else lambda line: None)
    return lambda frame: watch.check(f"{frame.name}" + ("" if frame.index is None else f" frame {frame.index}"))


def predict_results(task_class, cfg, frames=None, writes: bool = False, log=print):
    """The Python API's predict: a generator of one Results per image or frame, lazy (a long video is
    never held in memory), after the checks of open_predictor, made now. With `writes`, the run folder
    holds what the command line writes; without, nothing is written, not even predictions.json."""
    opened = open_predictor(task_class, cfg, frames, writes)
    return each_result(*opened, cfg, log)


def each_result(task, predictor, source, run_dir, cfg, log):
    count, seconds, total, before = 0, 0.0, 0, dict(predictor.seconds)
    for frame, output, image, spent in predicted_frames(source, run_dir, predictor.infer, predictor.annotate,
                                                        predictor.results, cfg.save, cfg.verbose, log, task.input_name,
                                                        thread_watch(predictor, cfg, log)):
        count, seconds = count + 1, seconds + spent
        speed = {name: round(1000 * (t - before[name]), 3) for name, t in predictor.seconds.items() if t > before[name]}
        before = dict(predictor.seconds)
        entries = predictor.results[total:] if run_dir is not None else list(predictor.results)
        total += len(entries)
        if run_dir is None:  # nothing to write at the end: a long video's entries are not kept
            predictor.results.clear()
        yield Results(task.name, frame.name, frame.index, frame.pixels, predictor.classes, entries,
                      {**speed, "total": round(1000 * spent, 3)}, partial(predictor.draw, frame, output), image,
                      **predictor.fields(frame, output))
    if cfg.verbose:
        # finish() counts the entries, dropped frame by frame when nothing is written
        summary = predictor.finish() if run_dir is not None else f"{total} predictions"
        log_predicted(task, predictor, count, seconds, False, summary, run_dir, log)
    elif run_dir is not None:
        predictor.finish()


def export(task_class, cfg, log=print) -> Path:
    """Write trained weights as cfg.format (ONNX) beside them: best.safetensors -> best.onnx."""
    from .onnx_export import export_onnx

    if Path(cfg.weights).suffix == ".onnx":
        raise FovealError(f"weights: {cfg.weights} is already exported; name the .safetensors it came from")
    if cfg.half and cfg.int8:
        raise FovealError("int8: an int8 graph is a CPU graph, half=true a GPU one: choose one of them")
    configure_cpu(cfg.threads, log=log if cfg.verbose else None)
    device = select_device(cfg.device) if cfg.half else torch.device("cpu")  # fp16 is traced where it runs
    model, meta = load_trained(cfg.weights, task_class.name, device)
    imgsz = cfg.imgsz or meta["imgsz"]
    task = task_class.trained(cfg, {**meta, "imgsz": imgsz})  # int8 calibrates at imgsz
    use_inference_options(task, model, "val")  # a graph with NMS keeps val's thresholds
    task.check_imgsz(imgsz)
    calibration = calibration_images(task, model) if cfg.int8 else None
    input_shape, _ = task_class.info_input(meta["model_kwargs"], imgsz)
    series_shape = input_shape if len(input_shape) == 3 else None  # (1, window, columns): not images
    path = export_onnx(task.inference_model(model), meta, Path(cfg.weights).with_suffix(".onnx"), imgsz, cfg.dynamic,
                       nms=cfg.nms, half=cfg.half, simplify=cfg.simplify, calibration=calibration,
                       series_shape=series_shape)
    if cfg.verbose:
        shape = " x ".join(map(str, input_shape))
        if cfg.dynamic:
            shape = "any batch" + ("" if series_shape else ", any size in multiples of 32")
        kind = f"; int8, calibrated on {len(calibration)} images" if cfg.int8 else ""
        log(f"exported {path} ({path.stat().st_size / 1e6:.1f} MB; input {shape}{kind})")
    return path


def calibration_images(task, model) -> torch.Tensor:
    """(N, 3, imgsz, imgsz): CALIBRATION_IMAGES images of the training split (the data the weights were
    trained on, or data=), prepared exactly as the model receives them in `val`, for int8's ranges."""
    if not task.cfg.data:
        raise FovealError("int8: calibration needs images: name the training data with data= (these weights "
                          "do not record it)")
    task.setup()
    splits = task.data.splits
    task.eval_split = "train" if "train" in splits else next(iter(splits))
    batch = square_batch(task, CALIBRATION_IMAGES, torch.device("cpu"))
    seen = []
    hook = model.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        with torch.inference_mode():
            task.forward_eval(model, batch)
    finally:
        hook.remove()
    side = task.meta["imgsz"]
    if len(seen) != 1 or tuple(seen[0].shape[-2:]) != (side, side):  # e.g. restore's whole images, one at a time
        raise FovealError(f"int8: not available for {task.name} models yet (their val images are not {side} px squares)")
    return seen[0].float()


def square_batch(task, size: int, device):
    """`size` images of task.eval_split (repeated if it has fewer) as the val loader batches them, but
    letterboxed to imgsz x imgsz (for timing at the square size, and int8 calibration)."""
    dataset = task.dataset(task.eval_split, False)
    if not len(dataset):
        raise FovealError(f"data: the '{task.eval_split}' split is empty: no images to take")
    if hasattr(dataset, "stride"):  # detection letterboxes val images to multiples of 32 only
        dataset.stride = 0
    return move_to(task.collate([dataset[k % len(dataset)] for k in range(size)]), device)
