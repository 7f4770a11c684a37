"""Prediction input and output shared by every task: frames from images, folders, globs, video files
and cameras, and the loop that runs a model over them, writing annotated images or video as it goes.

One frame at a time, as a real-time stream would be. Ctrl-C or the end of a stream stops cleanly,
keeping everything written so far (predictions.json included).
"""

import math
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np

from ..data.images import read_pixels, resolve_source
from ..errors import FovealError
from ..files import atomic_path, write_bytes, write_json

VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
DEFAULT_FPS = 30.0  # for streams that don't say (many cameras report 0)
# FFmpeg's own log lines (a damaged file's "moov atom not found") would come before foveal's one-line error;
# OpenCV reads this once, at the first capture, so it is set on import (a user's own setting wins)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")


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


def stream_frames(capture: cv2.VideoCapture, name: str, stride: int = 1):
    """Every `stride`th frame, numbered as in the source; the skipped ones are grabbed, not decoded, and
    the frame rate divided by `stride`, so that a written video plays at the source's speed."""
    fps = stream_fps(capture) / stride
    try:
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                return
            yield Frame(name, index, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), fps)
            for _ in range(stride - 1):
                capture.grab()
            index += stride
    finally:
        capture.release()


def image_frames(paths: list[Path]):
    """Frames of image files, read as training reads them (images.read_pixels); unreadable ones are skipped."""
    for path in paths:
        try:
            pixels = read_pixels(path)
        except FovealError as e:
            print(f"skipping {e}")
            continue
        yield Frame(str(path), None, pixels, None)


def frames(source: str, video_stride: int = 1):
    """Frames of a camera index, a video file (every `video_stride`th), or images (a file, folder or glob).

    The source is opened here, not on the first frame, so a missing file or camera fails before
    any output is written.
    """
    if is_stream(source):
        name = f"camera{source}" if source.isdigit() else Path(source).stem
        return stream_frames(open_capture(source), name, video_stride)
    return image_frames(resolve_source(source))



def run_stream(source, run_dir: Path, infer: Callable, annotate: Callable, results: list, save: bool,
               verbose: bool, log=print) -> tuple[int, float, bool]:
    """For each frame of `source`: output = infer(frame pixels) (timed), then
    (image, summary) = annotate(frame, output); `image` (RGB) is written as <stem>.jpg or into
    <video>.mp4 at the source's frame rate when `save`. `results` is written to predictions.json
    at the end, also on Ctrl-C or an error. Returns (frames, seconds spent in infer, interrupted)."""
    writers, count, seconds, interrupted = {}, 0, 0.0, False
    videos = ExitStack()  # each video under a temporary name, renamed over <video>.mp4 once its writer is released
    try:
        for frame in source:
            started = time.perf_counter()
            output = infer(frame.pixels)
            seconds += time.perf_counter() - started
            count += 1
            image, summary = annotate(frame, output)
            if save and image is not None:
                bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
                if frame.index is None:
                    write_bytes(run_dir / f"{Path(frame.name).stem}.jpg", cv2.imencode(".jpg", bgr)[1].tobytes())
                else:
                    if frame.name not in writers:
                        video = videos.enter_context(atomic_path(run_dir / f"{frame.name}.mp4"))
                        writers[frame.name] = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), frame.fps,
                                                              (image.shape[1], image.shape[0]))
                        videos.callback(writers[frame.name].release)
                    writers[frame.name].write(bgr)
            if verbose and (frame.index is None or frame.index % 100 == 0):
                log(f"{frame.name}{'' if frame.index is None else f' frame {frame.index}'}: {summary}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        videos.close()  # what was written so far is kept, as predictions.json is
        write_json(run_dir / "predictions.json", results, indent=1)
    return count, seconds, interrupted


def frame_stem(frame: Frame) -> str:
    """File stem for a frame's outputs: the image's stem, or <video>_<frame number>."""
    return Path(frame.name).stem + (f"_{frame.index:06d}" if frame.index is not None else "")
