"""Instance segmentation speed on the CPU: yolo_n-seg against Mask R-CNN in training, against yolo_n in inference.

  train img/s   images per second of forward + loss + backward + AdamW step, batch `--batch`, at `--train-imgsz`
                (128: the README's shapes recipe for both), fp32, on the synthetic scenes with their masks;
                yolo_n-seg and maskrcnn_resnet18_fpn, and the ratio (issue 26's goal: at least 5x)
  latency       median ms of one 320 x 320 frame through the eval model (the two models in turn), batch 1, `--threads` threads, BatchNorms
                folded, post-processing included: yolo_n (boxes) and yolo_n-seg (boxes and the masks assembled
                at the input size), and the ratio (goal: within 1.3x). Untrained models at conf=0 and
                max_det=10: both keep 10 detections, so the seg model assembles 10 masks each frame.

Run by hand, never in CI:

    .venv/bin/python benchmarks/instance_speed.py
"""

import argparse

import numpy as np
import torch

import foveal
from foveal.data.detect_dataset import collate
from foveal.data.detection import ImageAnnotations
from foveal.data.segment_dataset import InstanceDataset
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.tasks.boxes import BoxTask

from common import interleaved_median_seconds, median_seconds


def training_rate(name: str, batch, steps: int) -> float:
    """Training images per second of segment model `name` on one fixed batch (images, targets)."""
    torch.manual_seed(0)
    images, targets = batch
    model = foveal.create_model(name, "segment", num_classes=len(SHAPE_CLASSES), imgsz=images.shape[-1]).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step():
        losses = model(BoxTask.prepare(images.clone()), targets)
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()

    return len(images) / median_seconds(step, steps)


def eval_model(name: str, task: str, imgsz: int):
    torch.manual_seed(0)  # the same seed: yolo_n-seg's detector starts as yolo_n does, the same 10 detections
    return foveal.create_model(name, task, num_classes=len(SHAPE_CLASSES), imgsz=imgsz, conf=0.0,
                               max_det=10).eval().fuse()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-imgsz", type=int, default=128)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    scenes = make_scene_set(args.batch, args.train_imgsz, seed=0, min_objects=1)
    items = [ImageAnnotations("", s.image.shape[1], s.image.shape[0], s.boxes, s.labels, np.zeros(len(s.labels), bool),
                              s.image, s.masks) for s in scenes]
    dataset = InstanceDataset(items, args.train_imgsz)
    batch = collate([dataset[i] for i in range(len(dataset))])
    print(f"torch {torch.__version__}, {args.threads} threads")
    rates = {name: training_rate(name, batch, args.steps) for name in ("yolo_n-seg", "maskrcnn_resnet18_fpn")}
    for name, rate in rates.items():
        print(f"  train {name:24s} {rate:7.1f} images/s  (batch {args.batch}, {args.train_imgsz} px, fp32)")
    print(f"  yolo_n-seg / maskrcnn_resnet18_fpn training: {rates['yolo_n-seg'] / rates['maskrcnn_resnet18_fpn']:.1f}x")
    frame = make_scene_set(1, 320, seed=1, min_objects=3)[0].image
    image = BoxTask.prepare(torch.from_numpy(frame).permute(2, 0, 1)[None])
    models = {"detect": eval_model("yolo_n", "detect", 320), "segment": eval_model("yolo_n-seg", "segment", 320)}
    with torch.inference_mode():  # interleaved: a burst of load from elsewhere falls on both alike
        medians = interleaved_median_seconds({task: lambda m=m: m(image) for task, m in models.items()}, args.repeats)
    detect, segment = 1000 * medians["detect"], 1000 * medians["segment"]
    print(f"  latency yolo_n {detect:.1f} ms, yolo_n-seg {segment:.1f} ms (masks included): {segment / detect:.2f}x")


if __name__ == "__main__":
    main()
