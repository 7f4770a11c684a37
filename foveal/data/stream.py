"""Prediction input and output shared by every task: frames from images, folders, globs, video files
and cameras, and the loop that runs a model over them, writing annotated images or video as it goes.

One frame at a time, as a real-time stream would be. Ctrl-C or the end of a stream stops cleanly,
keeping everything written so far (predictions.json included).
"""

import math
import time
from pathlib import Path
from typing import Callable, NamedTuple

import cv2
import numpy as np
from tqdm import tqdm

from ..data.images import read_pixels, resolve_source
from ..errors import FovealError
from ..files import write_bytes, write_json

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


class Counted:
    """Frames whose number is known before the first (total None: a camera's), for predict's progress bar."""

    def __init__(self, frames, total: int | None):
        self.frames, self.total = frames, total

    def __iter__(self):
        return iter(self.frames)


def video_length(capture: cv2.VideoCapture, stride: int) -> int | None:
    """The frames a video file will give at `stride`, as its container says (None when it does not)."""
    count = capture.get(cv2.CAP_PROP_FRAME_COUNT)
    return math.ceil(count / stride) if math.isfinite(count) and count > 0 else None


def frames(source: str, video_stride: int = 1):
    """Frames of a camera index, a video file (every `video_stride`th), or images (a file, folder or glob).

    The source is opened here, not on the first frame, so a missing file or camera fails before
    any output is written.
    """
    if is_stream(source):
        name = f"camera{source}" if source.isdigit() else Path(source).stem
        capture = open_capture(source)
        length = None if source.isdigit() else video_length(capture, video_stride)
        return Counted(stream_frames(capture, name, video_stride), length)
    paths = resolve_source(source)
    return Counted(image_frames(paths), len(paths))



def run_stream(source, run_dir: Path, infer: Callable, annotate: Callable, results: list, save: bool,
               verbose: bool, log=print, unit: str = "frame") -> tuple[int, float, bool]:
    """For each frame of `source`: output = infer(frame pixels) (timed), then
    (image, summary) = annotate(frame, output); `image` (RGB) is written as <stem>.jpg or into
    <video>.mp4 at the source's frame rate when `save`. `results` is written to predictions.json
    at the end, also on Ctrl-C or an error. Returns (frames, seconds spent in infer, interrupted).
    With `verbose`, a progress bar on a terminal for more than one frame (a camera's: a count and a rate)."""
    writers, count, seconds, interrupted = {}, 0, 0.0, False
    total = len(source) if isinstance(source, list) else getattr(source, "total", None)
    bar = tqdm(source, total=total, desc="predict", unit=unit, leave=False, dynamic_ncols=True,
               disable=not verbose or total == 1 or None)  # None: off where stderr is not a terminal
    try:
        for frame in bar:
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
                        writers[frame.name] = cv2.VideoWriter(str(run_dir / f"{frame.name}.mp4"),
                                                              cv2.VideoWriter_fourcc(*"mp4v"), frame.fps,
                                                              (image.shape[1], image.shape[0]))
                    writers[frame.name].write(bgr)
            if verbose and (frame.index is None or frame.index % 100 == 0):
                with tqdm.external_write_mode():  # the line above the bar, not through it
                    log(f"{frame.name}{'' if frame.index is None else f' frame {frame.index}'}: {summary}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        bar.close()
        for writer in writers.values():
            writer.release()
        write_json(run_dir / "predictions.json", results, indent=1)
    return count, seconds, interrupted


def frame_stem(frame: Frame) -> str:
    """File stem for a frame's outputs: the image's stem, or <video>_<frame number>."""
    return Path(frame.name).stem + (f"_{frame.index:06d}" if frame.index is not None else "")
