"""Segmentation speed on the CPU: inference latency (batch 1) and training images per second.

For each model, at the same input size and number of classes (background + 6 shapes), on
foveal's synthetic scenes:

  latency      median seconds per image of model(image) in eval mode plus the argmax, batch 1,
               `--threads` torch threads, channels_last
  frames/s     1 / latency
  train img/s  images per second of forward + CE + Dice loss + backward + AdamW step, batch `--batch`
  GMACs        multiply-accumulates of one forward pass (foveal segment info)

Run by hand, never in CI (the README quotes its output):

    .venv/bin/python benchmarks/segment_speed.py
    .venv/bin/python benchmarks/segment_speed.py --models unet resunet deeplabv3plus_resnet18 --imgsz 256
"""

import argparse
import platform

import numpy as np
import torch

import foveal
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.losses.segmentation import segmentation_loss
from foveal.inspect.info import model_info
from foveal.tasks.segment.semantic import SegmentTask

from common import median_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["unet", "deeplabv3plus_resnet18"])
    parser.add_argument("--imgsz", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--train-steps", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    scenes = make_scene_set(args.batch, args.imgsz, seed=0, min_objects=1)
    images = SegmentTask.prepare(torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2))
    images = images.contiguous(memory_format=torch.channels_last)  # as the models, and as training runs
    masks = torch.from_numpy(np.stack([s.semantic_mask() for s in scenes])).long()
    classes = len(SHAPE_CLASSES) + 1
    print(f"torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"input {args.imgsz}x{args.imgsz}, {classes} classes")
    print(f"{'model':<28} {'GMACs':>6} {'latency ms':>10} {'frames/s':>9} {'train img/s':>12}")
    for name in args.models:
        model = foveal.create_model(name, "segment", num_classes=classes).to(memory_format=torch.channels_last)
        macs = model_info(model.eval(), args.imgsz).total_macs / 1e9

        def infer():
            with torch.inference_mode():
                model(images[:1]).argmax(1)

        def train_step():
            loss = segmentation_loss(model(images), masks)[0]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        seconds = median_seconds(infer, args.repeats, warmup=3)
        model.train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        rate = args.batch / median_seconds(train_step, args.train_steps, warmup=1)
        print(f"{name:<28} {macs:>6.2f} {seconds * 1000:>10.1f} {1 / seconds:>9.1f} {rate:>12.1f}")


if __name__ == "__main__":
    main()
