"""Pose speed on the CPU: yolo_n-pose against yolo_n detection, in training and in inference (issue 27's goals).

  train img/s   images per second of forward + loss + backward + AdamW step on one fixed batch of `--batch`
                stickmen images (13 joints) at `--train-imgsz`, fp32, channels_last as train runs it:
                yolo_n-pose and yolo_n (detection, one class) on the same batch, their steps interleaved;
                the ratio (goal: at least 0.8x)
  latency       median ms of one `--imgsz` stickmen frame, batch 1, everything predict runs: BoxTask.prepare,
                the eval model with its BatchNorms fused (as BoxTask.inference_model), NMS and, for pose, each
                detection's joints; yolo_n and yolo_n-pose interleaved, the ratio (goal: within 1.2x). With
                --weights (trained yolo_n-pose weights, e.g. the README recipe's runs/pose/stickmen/best.safetensors)
                both models take them, the detector all but the keypoint branches, so both keep the same
                detections at --conf; without, untrained models (the same detector: the same scores) at the conf
                that lets 30 candidates reach NMS, as a trained model's few dozen, and max_det 10: 10 detections.
  others        keypointrcnn_resnet18_fpn at --imgsz and hourglass_s at 256 px (a landmark crop), untrained,
                ms per image, batch 1 (--others 0 leaves them out)

Both ratios come from one run with the two models' steps taken in turn, so that load from other processes
falls on both alike. Run by hand, never in CI:

    .venv/bin/python benchmarks/pose_speed.py
    .venv/bin/python benchmarks/pose_speed.py --weights runs/pose/stickmen/best.safetensors
"""

import argparse
import os

import torch

import foveal
from foveal.data.detect_dataset import collate
from foveal.data.pose_dataset import PoseDataset
from foveal.data.stickmen import STICKMEN_LAYOUT, stickmen_pose_data
from foveal.engine.checkpoint import load_state, load_weights
from foveal.engine.cores import available_cores, cores_busy_elsewhere
from foveal.engine.device import configure_cpu
from foveal.tasks.boxes import BoxTask

from common import interleaved_median_seconds, median_seconds

JOINTS = STICKMEN_LAYOUT.count
MODELS = {"yolo_n": "detect", "yolo_n-pose": "pose"}
# untrained models' scores say nothing: a conf that passes a trained model's few dozen candidates to NMS
UNTRAINED_CANDIDATES, UNTRAINED_MAX_DET = 30, 10


def stickmen_images(count: int, imgsz: int):
    """(uint8 images (count, 3, S, S), targets) of the first `count` stickmen training images, unaugmented."""
    items = stickmen_pose_data(imgsz=imgsz, n_train=count, n_val=1, n_test=1).splits["train"]
    dataset = PoseDataset(items, imgsz, flip_idx=STICKMEN_LAYOUT.flip_idx)
    return collate([dataset[i] for i in range(count)])


def create(name: str, imgsz: int, **kwargs):
    torch.manual_seed(0)  # yolo_n-pose builds yolo_n's layers first: both start with the same detector
    extra = {"num_keypoints": JOINTS} if MODELS[name] == "pose" else {}
    model = foveal.create_model(name, MODELS[name], num_classes=1, imgsz=imgsz, **extra, **kwargs)
    return model.to(memory_format=torch.channels_last)


def training_rates(batch, steps: int) -> dict:
    """{name: training images per second} of both models on one fixed batch, steps interleaved."""
    images, targets = batch
    train_steps = {}
    for name in MODELS:
        model = create(name, images.shape[-1]).train()
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step(model=model, optimizer=optimizer):
            losses = model(BoxTask.prepare(images.clone()), targets)
            optimizer.zero_grad()
            sum(losses.values()).backward()
            optimizer.step()

        train_steps[name] = step
    return {name: len(images) / seconds
            for name, seconds in interleaved_median_seconds(train_steps, steps, warmup=1).items()}


def eval_models(imgsz: int, frame: torch.Tensor, weights: str, conf: float) -> tuple[dict, str]:
    """({name: fused eval model} as val and predict run them, how their detections come): both from `weights`
    at `conf`, or untrained at the conf that lets UNTRAINED_CANDIDATES of `frame`'s anchors reach NMS."""
    models, state, sigmas = {}, {}, None
    if weights:
        state, meta = load_weights(weights)
        sigmas = meta["model_kwargs"].get("sigmas")
    for name in MODELS:
        extra = {"sigmas": sigmas} if MODELS[name] == "pose" else {}
        model = create(name, imgsz, conf=conf, max_det=100 if weights else UNTRAINED_MAX_DET, **extra)
        if weights:  # the detector takes all but the keypoint branches: the same boxes as the pose model's
            load_state(model, {k: v for k, v in state.items()
                               if MODELS[name] == "pose" or not k.startswith("keypoint_branches.")})
        models[name] = model.eval().fuse()
    if weights:
        return models, f"trained, conf {conf}"
    with torch.inference_mode():  # the two untrained detectors are the same (create's seed): so are their scores
        detector = models["yolo_n"]
        scores = detector.decode(detector.forward_raw(BoxTask.prepare(frame.clone())))[0].sigmoid()
    threshold = scores.flatten().topk(UNTRAINED_CANDIDATES + 1).values[-1].item()
    for model in models.values():
        model.conf = threshold
    return models, f"untrained, {UNTRAINED_CANDIDATES} candidates to NMS, max_det {UNTRAINED_MAX_DET}"


def latencies_ms(models: dict, frame: torch.Tensor, repeats: int) -> tuple[dict, dict]:
    """({name: median ms of one frame}, {name: detections it kept}), the models interleaved."""
    def infer(model):
        return lambda: model(BoxTask.prepare(frame.clone()))

    with torch.inference_mode():
        kept = {name: len(model(BoxTask.prepare(frame.clone()))[0]["boxes"]) for name, model in models.items()}
        seconds = interleaved_median_seconds({name: infer(model) for name, model in models.items()}, repeats)
    return {name: 1000 * s for name, s in seconds.items()}, kept


def other_ms(name: str, imgsz: int, repeats: int, **kwargs) -> tuple[float, int]:
    """(median ms of one frame, detections kept) of untrained pose model `name`, as val runs it (no fuse())."""
    torch.manual_seed(0)
    model = foveal.create_model(name, "pose", num_classes=1, num_keypoints=JOINTS, imgsz=imgsz, **kwargs).eval()
    frame = stickmen_images(1, imgsz)[0]
    with torch.inference_mode():
        kept = len(model(BoxTask.prepare(frame.clone()))[0]["boxes"])
        return 1000 * median_seconds(lambda: model(BoxTask.prepare(frame.clone())), repeats), kept


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-imgsz", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=6, help="timed training steps of each model")
    parser.add_argument("--repeats", type=int, default=30, help="timed frames of each model")
    parser.add_argument("--weights", default="", help="trained yolo_n-pose weights (empty: untrained, 10 detections)")
    parser.add_argument("--conf", type=float, default=0.25, help="with --weights: predict's confidence threshold")
    parser.add_argument("--others", type=int, default=1, help="1: also keypointrcnn_resnet18_fpn and hourglass_s")
    args = parser.parse_args()
    busy = cores_busy_elsewhere()
    configure_cpu(args.threads)  # as train and predict: these threads, denormals flushed
    print(f"torch {torch.__version__}, {args.threads} threads; at start {busy:.1f} of {available_cores()} cores busy "
          f"elsewhere, load average {os.getloadavg()[0]:.2f}")
    print("  " + " ".join(f"--{k.replace('_', '-')} {v if v != '' else repr(v)}" for k, v in vars(args).items()))
    rates = training_rates(stickmen_images(args.batch, args.train_imgsz), args.steps)
    for name, rate in rates.items():
        print(f"  train   {name:26s} {rate:7.1f} images/s  (batch {args.batch}, {args.train_imgsz} px, fp32)")
    frame = stickmen_images(1, args.imgsz)[0]
    models, how = eval_models(args.imgsz, frame, args.weights, args.conf)
    ms, kept = latencies_ms(models, frame, args.repeats)
    for name in MODELS:
        print(f"  latency {name:26s} {ms[name]:7.1f} ms  ({args.imgsz} px, batch 1, fused, {kept[name]} detections: "
              f"{how})")
    if args.others:  # Keypoint R-CNN's keypoint head runs on every detection: 10, as the yolos' untrained
        for name, imgsz, kwargs in (("keypointrcnn_resnet18_fpn", args.imgsz, {"conf": 0.0, "max_det": 10}),
                                    ("hourglass_s", 256, {})):
            seconds, kept = other_ms(name, imgsz, max(args.repeats // 3, 5), **kwargs)
            print(f"  latency {name:26s} {seconds:7.1f} ms  ({imgsz} px, batch 1, {kept} detections: untrained)")
    print(f"  yolo_n-pose / yolo_n: training {rates['yolo_n-pose'] / rates['yolo_n']:.2f}x (goal >= 0.8x), "
          f"latency {ms['yolo_n-pose'] / ms['yolo_n']:.2f}x (goal <= 1.2x)")


if __name__ == "__main__":
    main()
