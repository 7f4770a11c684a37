"""Detection on images, folders, globs, video files and cameras, with annotated output and JSON/TXT.

One frame at a time, as a real-time stream would be: letterbox, detect, map the boxes back to
the frame, draw, write. Ctrl-C or the end of a stream stops cleanly, keeping what was written.
"""

import json
import math
import time
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch

from ..data.detect_transforms import letterbox
from ..data.images import resolve_source
from ..engine.checkpoint import load_trained
from ..engine.device import configure_cpu, select_device
from ..engine.runs import new_run_dir
from ..errors import FovealError
from ..report.draw import draw_boxes

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
DEFAULT_FPS = 30.0  # for streams that don't say (many cameras report 0)


class Frame(NamedTuple):
    name: str  # the image's path, the video's stem, or "camera0"
    index: int | None  # frame number in a video or camera stream; None for an image
    pixels: np.ndarray  # (H, W, 3) uint8 RGB
    fps: float | None  # the stream's frames per second; None for an image


def is_stream(source: str) -> bool:
    return source.isdigit() or Path(source).suffix.lower() in VIDEO_EXTENSIONS


def stream_fps(capture: cv2.VideoCapture) -> float:
    """The stream's frame rate, or DEFAULT_FPS when the container or camera reports 0 or NaN."""
    fps = capture.get(cv2.CAP_PROP_FPS)
    return fps if math.isfinite(fps) and fps > 0 else DEFAULT_FPS


def open_capture(source: str) -> cv2.VideoCapture:
    """An opened capture of a camera index or a video file; a one-line FovealError when it can't be."""
    if source.isdigit():
        # OpenCV logs a warning per backend it tries; our one-line error says it better
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            capture = cv2.VideoCapture(int(source))
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not capture.isOpened():
            raise FovealError(f"camera {source}: cannot open it (no camera with that index, or another "
                              f"program is using it)")
        return capture
    if not Path(source).is_file():
        raise FovealError(f"source: no such file: {source}")
    capture = cv2.VideoCapture(source)
    if not capture.isOpened():
        raise FovealError(f"source: cannot open video {source} (unsupported format or damaged file)")
    return capture


def stream_frames(capture: cv2.VideoCapture, name: str):
    fps = stream_fps(capture)
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield Frame(name, index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), fps)
            index += 1
    finally:
        capture.release()


def image_frames(paths: list[Path]):
    for path in paths:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            print(f"skipping {path}: not a readable image")
            continue
        yield Frame(str(path), None, cv2.cvtColor(image, cv2.COLOR_BGR2RGB), None)


def frames(source: str):
    """Frames of a camera index, a video file, or images (a file, folder or glob).

    The source is opened here, not on the first frame, so a missing file or camera fails before
    any output is written.
    """
    if is_stream(source):
        name = f"camera{source}" if source.isdigit() else Path(source).stem
        return stream_frames(open_capture(source), name)
    return image_frames(resolve_source(source))


@torch.inference_mode()
def detect_frame(model, frame: np.ndarray, imgsz: int, device) -> dict:
    """Detections of one (H, W, 3) RGB frame in its own pixel coordinates (numpy arrays)."""
    boxed, scale, (pad_x, pad_y) = letterbox(frame, imgsz)
    x = torch.from_numpy(boxed).to(device).permute(2, 0, 1)[None].float().div_(255)
    out = model(x.contiguous(memory_format=torch.channels_last))[0]
    boxes = (out["boxes"].float().cpu().numpy() - [pad_x, pad_y, pad_x, pad_y]) / scale
    boxes[:, 0::2] = boxes[:, 0::2].clip(0, frame.shape[1])
    boxes[:, 1::2] = boxes[:, 1::2].clip(0, frame.shape[0])
    return {"boxes": boxes, "scores": out["scores"].float().cpu().numpy(), "labels": out["labels"].cpu().numpy()}


def yolo_lines(det: dict, width: int, height: int) -> str:
    lines = []
    for (x1, y1, x2, y2), score, label in zip(det["boxes"], det["scores"], det["labels"]):
        lines.append(f"{label} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
                     f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f} {score:.5f}")
    return "\n".join(lines) + ("\n" if lines else "")


def predict(cfg, log=print) -> list[dict]:
    """Run trained weights over cfg.source; returns COCO-style results (one dict per detection)."""
    device = select_device(cfg.device)
    configure_cpu(cfg.threads)
    conf = cfg.conf if cfg.conf >= 0 else 0.25
    model, meta = load_trained(cfg.weights, "detect", device, conf=conf, iou=cfg.iou, max_det=cfg.max_det)
    model.to(memory_format=torch.channels_last)
    classes, imgsz = meta["classes"], meta["imgsz"]
    if not cfg.source:
        raise FovealError("source: name an image, a folder, a glob, a video file or a camera index (0)")
    source = frames(cfg.source)
    run_dir = new_run_dir(cfg.project, "detect", cfg.name, cfg.exist_ok, stem="predict")
    results, writers, count, seconds, interrupted = [], {}, 0, 0.0, False
    try:
        for image_id, (name, index, frame, fps) in enumerate(source):
            started = time.perf_counter()
            det = detect_frame(model, frame, imgsz, device)
            seconds += time.perf_counter() - started
            count += 1
            stem = Path(name).stem + (f"_{index:06d}" if index is not None else "")
            for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
                x1, y1, x2, y2 = (float(v) for v in box)
                results.append({"image_id": image_id, "file_name": name, "frame": index, "category_id": int(label),
                                "category": classes[int(label)], "bbox": [round(x1, 2), round(y1, 2),
                                round(x2 - x1, 2), round(y2 - y1, 2)], "score": round(float(score), 5)})
            if cfg.save_txt:
                (run_dir / "labels").mkdir(exist_ok=True)
                (run_dir / "labels" / f"{stem}.txt").write_text(yolo_lines(det, frame.shape[1], frame.shape[0]))
            if cfg.save:
                drawn = cv2.cvtColor(draw_boxes(frame, det["boxes"], det["labels"], classes, det["scores"],
                                                line_width=cfg.line_width), cv2.COLOR_RGB2BGR)
                if index is None:
                    cv2.imwrite(str(run_dir / f"{Path(name).stem}.jpg"), drawn)
                else:
                    if name not in writers:
                        writers[name] = cv2.VideoWriter(str(run_dir / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"),
                                                        fps, (frame.shape[1], frame.shape[0]))
                    writers[name].write(drawn)
            if cfg.verbose and (index is None or index % 100 == 0):
                log(f"{name}{'' if index is None else f' frame {index}'}: {len(det['labels'])} detections")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        for writer in writers.values():
            writer.release()
        (run_dir / "predictions.json").write_text(json.dumps(results, indent=1))
    if cfg.verbose:
        speed = f", {count / seconds:.1f} frames/s (model and post-processing)" if seconds else ""
        log(f"{'interrupted after ' if interrupted else ''}{count} images/frames, {len(results)} detections{speed}")
        log(f"results: {run_dir}")
    return results
