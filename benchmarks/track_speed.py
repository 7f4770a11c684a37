"""Tracker speed on one CPU thread: milliseconds per frame of tracker.update at N objects.

The detections are made up, no detector runs: N boxes (20 to 80 px) moving at constant speed with a pixel of
jitter through a 1280x720 frame that pans (the boxes move with the camera too), scores uniform in [0.3, 1]
(so that some go through ByteTrack's second, low-score round), a box in 20 missing each frame. Timed, as
the median over the frames after a warm-up:

  bytetrack            ByteTrack, no camera-motion compensation: Kalman filter + three rounds of matching
  botsort cmc=none     BoT-SORT without compensation: the same work with BoT-SORT's (cx, cy, w, h) state
  botsort cmc=sparse   BoT-SORT as by default: the above plus the camera's motion estimated from the frame
                       (corners + optical flow + RANSAC on a frame downscaled to 320 px), most of its time
  botsort cmc=ecc      the same with OpenCV's ECC alignment instead

Goal (issue 25): under 1 ms per frame at 100 objects on one core for the association + Kalman filter
(bytetrack, botsort cmc=none). Each figure is also given as a share of detection's own time per frame on the
same thread: yolo_n (untrained, fused, its NMS included) on one 320 x 320 frame. Run by hand, never in CI:

    .venv/bin/python benchmarks/track_speed.py
    .venv/bin/python benchmarks/track_speed.py --objects 300 --frames 300
"""

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one thread, before numpy loads
    os.environ[_name] = "1"

import argparse  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from foveal.track import make_tracker  # noqa: E402

WIDTH, HEIGHT = 1280, 720
PAN = np.array([4, 2])  # the camera's motion, px a frame: right and down


def detections(objects: int, frames: int, seed: int = 0):
    """Per frame: (boxes (K, 4) xyxy, scores (K,), classes (K,)) of `objects` boxes moving through the frame."""
    rng = np.random.default_rng(seed)
    start = rng.uniform([0, 0], [WIDTH, HEIGHT], (objects, 2))
    speed = rng.uniform(-3, 3, (objects, 2))
    size = rng.uniform(20, 80, (objects, 2))
    classes = rng.integers(0, 5, objects)
    out = []
    for t in range(frames):
        centre = (start + (speed - PAN) * t) % (WIDTH, HEIGHT) + rng.normal(0, 1, (objects, 2))
        boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
        seen = rng.random(objects) > 0.05
        out.append((boxes[seen], rng.uniform(0.3, 1.0, objects)[seen], classes[seen]))
    return out


def panning_frames(frames: int, seed: int = 0) -> list[np.ndarray]:
    """A smooth random texture seen through a 1280x720 window that pans 4 px right and 2 px down a frame."""
    rng = np.random.default_rng(seed)
    right, down = PAN * frames
    world = cv2.resize(rng.integers(0, 256, (120, 200, 3), dtype=np.uint8), (WIDTH + right, HEIGHT + down),
                       interpolation=cv2.INTER_CUBIC)
    return [world[PAN[1] * t: PAN[1] * t + HEIGHT, PAN[0] * t: PAN[0] * t + WIDTH].copy() for t in range(frames)]


def ms_per_frame(tracker, dets, frames, warmup: int = 10) -> float:
    times = []
    for t, (boxes, scores, classes) in enumerate(dets):
        started = time.perf_counter()
        tracker.update(boxes, scores, classes, frames[t] if frames else None)
        if t >= warmup:
            times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def detection_ms(imgsz: int = 320, repeats: int = 30) -> float:
    """Median ms of one yolo_n call (network and NMS) on an imgsz square, on this one thread."""
    import torch

    import foveal

    torch.set_num_threads(1)
    model = foveal.create_model("yolo_n", num_classes=6, imgsz=imgsz, conf=0.1).eval().fuse()
    image = torch.rand(1, 3, imgsz, imgsz).contiguous(memory_format=torch.channels_last)
    times = []
    with torch.inference_mode():
        for k in range(repeats + 5):
            started = time.perf_counter()
            model(image)
            if k >= 5:
                times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--objects", type=int, default=100)
    parser.add_argument("--frames", type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    dets = detections(args.objects, args.frames)
    video = panning_frames(args.frames)
    runs = [("bytetrack", "bytetrack", "none", False), ("botsort cmc=none", "botsort", "none", False),
            ("botsort cmc=sparse", "botsort", "sparse", True), ("botsort cmc=ecc", "botsort", "ecc", True)]
    detect = detection_ms()
    print(f"{args.objects} objects, {args.frames} frames of {WIDTH}x{HEIGHT}, one thread: median ms per frame "
          f"(yolo_n's detection at 320 px: {detect:.1f} ms)")
    for label, name, cmc, with_frames in runs:
        tracker = make_tracker(name, cmc=cmc)
        ms = ms_per_frame(tracker, dets, video if with_frames else None)
        print(f"  {label:20s} {ms:7.3f} ms/frame, {ms / detect:6.1%} of detection's  ({tracker.next_id - 1} ids given)")


if __name__ == "__main__":
    main()
