"""Detection speed on the CPU: inference latency (batch 1) and training images per second.

For each model, at the same input size, on foveal's synthetic scenes:

  latency      median seconds per image of model(image) in eval mode, post-processing (confidence
               threshold 0.25, NMS) included, batch 1, `--threads` torch threads, channels_last
  frames/s     1 / latency
  train img/s  images per second of forward + loss + backward + AdamW step, batch `--batch`

Weights are untrained. That does not change the cost of a one-stage detector, but a two-stage one
(Faster R-CNN) pays per RPN proposal: every proposal is RoI-aligned and passed through the box
head (two linear layers, 13.9 GMACs for 1000 proposals). Untrained, every one of the RPN's
post-NMS top-n proposals survives, so its latency is the worst case for that top-n. For these
models a second table gives the milliseconds spent in backbone + FPN, RPN and RoI heads, and the
proposals per image; `--rpn-top-n 150` measures the setting torchvision tuned its `_320_fpn`
variant with (the default is the model's own: 1000 for fasterrcnn_mobilenet_v3_large_fpn).

A third table times what `val` and `predict` do to run yolo_n faster, each against the way it ran
before, in the same run (median ms per image, batch 1, a 4:3 frame at --imgsz):

  fusion       Conv+BatchNorm folded (YOLO.fuse) / unfused
  rectangular  letterboxed to 320 x 256 (multiples of 32) / to the 320 x 320 square
  inference    torch.inference_mode / torch.no_grad
  grid cache   the anchor grid built once per input size / built at every call
  all four     val's and predict's model call now / before

With --loader, a fourth table: yolo_n training images per second on a YOLO data set in files (64
scenes, augmented as `train` does), for data-loading worker processes 0, 1, 2 (each also kept across
epochs: persistent), 3 epochs each, worker start-up included; ratios against 0 workers.

Goal in the README: yolo_n at 320 px runs in real time on 2 CPU cores (>= 25 frames/s).
Run by hand, never in CI:

    .venv/bin/python benchmarks/detect_speed.py
    .venv/bin/python benchmarks/detect_speed.py --models yolo_n --repeats 100
    .venv/bin/python benchmarks/detect_speed.py --models yolo_n --loader
    .venv/bin/python benchmarks/detect_speed.py --models yolo_n yolo_s --imgsz 320 --threads 2
    .venv/bin/python benchmarks/detect_speed.py --models fasterrcnn_mobilenet_v3_large_fpn --rpn-top-n 150
"""

import argparse
import copy
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import foveal
from foveal.ops.letterbox import letterbox
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.models.detect import yolo


def scene_batch(scenes, imgsz):
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float().div(255)
    targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)} for s in scenes]
    return images.contiguous(memory_format=torch.channels_last), targets


def timed(call, repeats: int) -> float:
    """Median seconds of call() over `repeats` calls after 3 of warm-up."""
    times = []
    for i in range(repeats + 3):
        started = time.perf_counter()
        call()
        if i >= 3:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def latency(model, image, repeats: int) -> float:
    model.eval()
    with torch.inference_mode():
        return timed(lambda: model(image), repeats)


def yolo_inference_changes(imgsz: int, repeats: int) -> list[tuple[str, float, float]]:
    """(change, ms before, ms after) for each speed change of yolo_n's val/predict path, and all together."""
    model = foveal.create_model("yolo_n", num_classes=len(SHAPE_CLASSES), imgsz=imgsz, conf=0.25).eval()
    model.to(memory_format=torch.channels_last)
    fused = copy.deepcopy(model).fuse()
    frame = make_scene_set(1, (imgsz * 3 // 4, imgsz), seed=0, min_objects=3)[0].image  # 4:3
    square, rect = (torch.from_numpy(letterbox(frame, imgsz, stride)[0]).permute(2, 0, 1)[None].float().div(255)
                    .contiguous(memory_format=torch.channels_last) for stride in (0, 32))

    def call(net, image, context, fresh_grid=False):
        def run():
            if fresh_grid:
                yolo.cached_anchor_grid.cache_clear()
            with context():
                net(image)
        return run

    def compare(before, after):  # alternately, so that a drift of the machine's speed hits both alike
        times = {before: [], after: []}
        for i in range(repeats + 3):
            for run in (before, after):
                started = time.perf_counter()
                run()
                if i >= 3:
                    times[run].append(time.perf_counter() - started)
        return statistics.median(times[before]) * 1000, statistics.median(times[after]) * 1000

    now = call(model, square, torch.inference_mode)
    return [("Conv+BN fusion", *compare(now, call(fused, square, torch.inference_mode))),
            (f"rectangular letterbox ({imgsz}x{rect.shape[2]} for {imgsz}x{imgsz})",
             *compare(now, call(model, rect, torch.inference_mode))),
            ("inference_mode (for no_grad)", *compare(call(model, square, torch.no_grad), now)),
            ("anchor grid once per size", *compare(call(model, square, torch.inference_mode, fresh_grid=True), now)),
            ("all four", *compare(call(model, square, torch.no_grad, fresh_grid=True),
                                  call(fused, rect, torch.inference_mode)))]


def loader_rates(imgsz: int, batch: int, epochs: int = 3) -> list[tuple[str, float]]:
    """(setting, training images/s) of yolo_n on file data for several DataLoader worker settings."""
    from foveal.data.detect_dataset import Augment, DetectionDataset, collate
    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.formats.yolo import read_yolo, write_yolo

    with tempfile.TemporaryDirectory() as folder:
        scenes = make_scene_set(64, imgsz, seed=1, min_objects=1)
        items = [ImageAnnotations("", imgsz, imgsz, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
                 for s in scenes]
        data = read_yolo(write_yolo(DetectionData(list(SHAPE_CLASSES), {"train": items}), Path(folder)))
        dataset = DetectionDataset(data.splits["train"], imgsz, Augment())
        rates = []
        for workers, persistent in ((0, False), (1, False), (1, True), (2, False), (2, True)):
            torch.manual_seed(0)
            model = foveal.create_model("yolo_n", num_classes=len(SHAPE_CLASSES), imgsz=imgsz).train()
            model.to(memory_format=torch.channels_last)
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                                 collate_fn=collate, persistent_workers=persistent, drop_last=True)
            started, count = time.perf_counter(), 0
            for _ in range(epochs):
                for images, targets in loader:
                    loss = sum(model(images.float().div(255).contiguous(memory_format=torch.channels_last),
                                     targets).values())
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
                    count += len(images)
            rates.append((f"{workers} workers{', persistent' if persistent else ''}",
                          count / (time.perf_counter() - started)))
            del loader
        return rates


def two_stage(model):
    """The torchvision GeneralizedRCNN inside foveal's wrapper, or None for a one-stage detector."""
    inner = getattr(model, "model", None)
    return inner if hasattr(inner, "rpn") and hasattr(inner, "roi_heads") else None


def stage_times(rcnn, model, image, repeats: int) -> tuple[dict[str, float], int]:
    """Median seconds in backbone (+FPN), rpn and roi_heads of one forward, and the proposals per image."""
    times, started, proposals = {}, {}, []

    def enter(name):
        return lambda module, args: started.__setitem__(name, time.perf_counter())

    def leave(name):
        def hook(module, args, output):
            times.setdefault(name, []).append(time.perf_counter() - started[name])
            if name == "rpn":
                proposals.append(len(output[0][0]))  # output: (list of (N, 4) boxes per image, losses)
        return hook

    handles = []
    for name in ("backbone", "rpn", "roi_heads"):
        module = getattr(rcnn, name)
        handles += [module.register_forward_pre_hook(enter(name)), module.register_forward_hook(leave(name))]
    try:
        latency(model, image, repeats)
    finally:
        for handle in handles:
            handle.remove()
    return {name: statistics.median(t[3:]) for name, t in times.items()}, proposals[-1]


def train_rate(model, images, targets, steps: int) -> float:
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    rates = []
    for i in range(steps + 1):
        started = time.perf_counter()
        loss = sum(model(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i >= 1:
            rates.append(len(images) / (time.perf_counter() - started))
    return statistics.median(rates)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["yolo_n", "fasterrcnn_mobilenet_v3_large_fpn"])
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument("--rpn-top-n", type=int, default=0,
                        help="two-stage models: RPN proposals kept after NMS at test time (0: the model's own)")
    parser.add_argument("--loader", action="store_true", help="also time yolo_n training for data-loader worker counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    scenes = make_scene_set(args.batch, args.imgsz, seed=0, min_objects=1)
    images, targets = scene_batch(scenes, args.imgsz)
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"input {args.imgsz}x{args.imgsz}")
    print(f"{'model':<36} {'latency ms':>10} {'frames/s':>9} {'train img/s':>12}")
    breakdowns = []
    for name in args.models:
        model = foveal.create_model(name, num_classes=len(SHAPE_CLASSES), imgsz=args.imgsz, conf=0.25)
        model.to(memory_format=torch.channels_last)
        rcnn = two_stage(model)
        if rcnn is not None and args.rpn_top_n:
            rcnn.rpn._post_nms_top_n["testing"] = args.rpn_top_n
        seconds = latency(model, images[:1], args.repeats)
        if rcnn is not None:
            breakdowns.append((name, rcnn.rpn.post_nms_top_n(), *stage_times(rcnn, model, images[:1], args.repeats)))
        rate = train_rate(model, images, targets, args.train_steps)
        print(f"{name:<36} {seconds * 1000:>10.1f} {1 / seconds:>9.1f} {rate:>12.1f}")
    if "yolo_n" in args.models:
        print(f"\nyolo_n in val and predict: each change against the way it ran before (ms per image, batch 1, "
              f"a 4:3 frame at {args.imgsz})")
        print(f"{'change':<52} {'before':>7} {'after':>7} {'after/before':>12}")
        for name, before, after in yolo_inference_changes(args.imgsz, args.repeats):
            print(f"{name:<52} {before:>7.1f} {after:>7.1f} {after / before:>12.2f}")
    if args.loader:
        print(f"\nyolo_n training on files, {args.threads} torch threads, batch {args.batch}: data-loading workers")
        print(f"{'setting':<24} {'img/s':>7} {'/ 0 workers':>11}")
        rates = loader_rates(args.imgsz, args.batch)
        for name, rate in rates:
            print(f"{name:<24} {rate:>7.1f} {rate / rates[0][1]:>11.2f}")
    if breakdowns:
        print("\ntwo-stage latency by part (ms, median), untrained weights")
        print(f"{'model':<36} {'backbone':>8} {'rpn':>6} {'roi_heads':>9} {'proposals':>9} {'top-n':>6}")
        for name, top_n, parts, proposals in breakdowns:
            print(f"{name:<36} {parts['backbone'] * 1000:>8.1f} {parts['rpn'] * 1000:>6.1f} "
                  f"{parts['roi_heads'] * 1000:>9.1f} {proposals:>9} {top_n:>6}")


if __name__ == "__main__":
    main()
