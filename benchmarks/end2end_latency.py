"""ONNX latency of an end2end yolo graph (one-to-one head, TopK: no NMS) against the NMS graph, interleaved.

Two rows per thread count, batch 1, at --imgsz, on foveal's synthetic scenes:

  graph        median ms of onnxruntime running the exported file alone (the NMS graph's NonMaxSuppression
               selects among the pairs above conf 0.001, val's, the graph's own)
  predict      median ms of predict's whole call (Predictor.infer: letterbox, graph, rows kept above 0.25)

Runs alternate between the two graphs, so that a drift of a busy machine's speed hits both alike: the
ratios hold better than the milliseconds. With --nms-weights and --end2end-weights (.safetensors of
`foveal detect train ... end2end=true` and without), each is exported beside itself at --imgsz (an
existing .onnx there is used as it is); without them, untrained yolo_n graphs of --classes classes, whose
every pair scores the 1% prior: the NMS graph's worst case (3,000 candidates reach NonMaxSuppression).
Run by hand, never in CI:

    .venv/bin/python benchmarks/end2end_latency.py --classes 80
    .venv/bin/python benchmarks/end2end_latency.py --nms-weights runs/detect/nms/best.safetensors \
        --end2end-weights runs/detect/e2e/best.safetensors --imgsz 160 --threads 1 2
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

import foveal
from foveal.data.synthetic import make_scene_set
from foveal.engine.checkpoint import load_trained, save_weights


def untrained_weights(folder: Path, classes: int, imgsz: int, end2end: bool) -> Path:
    model = foveal.create_model("yolo_n", "detect", num_classes=classes, end2end=end2end)
    kwargs = {"num_classes": classes, "imgsz": imgsz, **({"end2end": True} if end2end else {})}
    path = folder / f"{'end2end' if end2end else 'nms'}.safetensors"
    save_weights(path, model.state_dict(), {"task": "detect", "model": "yolo_n", "model_kwargs": kwargs,
                                            "classes": [str(k) for k in range(classes)], "imgsz": imgsz})
    return path


def graph_of(weights: Path, imgsz: int) -> Path:
    graph = weights.with_suffix(".onnx")
    if not graph.exists():
        foveal.api.run("detect", "export", weights=weights, imgsz=imgsz, verbose=False)
    return graph


def runners(graph: Path, threads: int):
    """(graph alone: images -> outputs, predict's infer: RGB frame -> detections) of one .onnx file."""
    from foveal.engine.onnx_runtime import session_runner
    from foveal.tasks.detect.task import DetectConfig, DetectTask

    torch.set_num_threads(threads)  # session_runner gives onnxruntime torch's thread count
    model, meta = load_trained(graph, "detect", torch.device("cpu"))
    model.conf = 0.25  # predict's
    predictor = DetectTask.trained(DetectConfig(), meta).predictor(model, torch.device("cpu"))
    return session_runner(graph, torch.device("cpu")), predictor.infer


def interleaved(calls: dict, inputs: list, repeats: int) -> dict:
    """Median ms of each call over `repeats` inputs after 5 of warm-up, the calls alternating."""
    times = {name: [] for name in calls}
    for i in range(repeats + 5):
        for name, call in calls.items():
            started = time.perf_counter()
            call(inputs[i % len(inputs)])
            if i >= 5:
                times[name].append(1e3 * (time.perf_counter() - started))
    return {name: statistics.median(values) for name, values in times.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nms-weights", type=Path)
    parser.add_argument("--end2end-weights", type=Path)
    parser.add_argument("--classes", type=int, default=80, help="untrained graphs' class count")
    parser.add_argument("--imgsz", type=int, default=160)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.nms_weights and args.end2end_weights:
            weights = {"nms": args.nms_weights, "end2end": args.end2end_weights}
        else:
            weights = {name: untrained_weights(Path(folder), args.classes, args.imgsz, name == "end2end")
                       for name in ("nms", "end2end")}
        graphs = {name: graph_of(path, args.imgsz) for name, path in weights.items()}
        frames = [s.image for s in make_scene_set(20, args.imgsz, seed=12)]
        images = [torch.from_numpy(f).permute(2, 0, 1)[None].float().div(255) for f in frames]
        print(f"yolo_n graphs at {args.imgsz} px, batch 1, median ms of {args.repeats} interleaved runs")
        print(f"{'threads':>7}  {'what':<8} {'NMS graph':>9} {'end2end':>8} {'ratio':>6}")
        for threads in args.threads:
            run = {name: runners(graph, threads) for name, graph in graphs.items()}
            graph_ms = interleaved({name: r[0] for name, r in run.items()}, images, args.repeats)
            infer_ms = interleaved({name: r[1] for name, r in run.items()}, frames, args.repeats)
            for what, ms in (("graph", graph_ms), ("predict", infer_ms)):
                print(f"{threads:>7}  {what:<8} {ms['nms']:>9.2f} {ms['end2end']:>8.2f} "
                      f"{ms['end2end'] / ms['nms']:>5.2f}x")


if __name__ == "__main__":
    main()
