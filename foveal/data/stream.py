"""Prediction input shared by every task: frames from images, folders, globs, video files, cameras and
in-memory arrays (the Python API), one frame at a time, as a real-time stream would be. The loop that
runs a model over them is engine/stream.py.
"""

import math
import os
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import torch
from PIL import Image

from ..data.images import pil_to_rgb, read_pixels, resolve_source
from ..errors import FovealError

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


def array_frames(source, bgr: bool = False) -> list[Frame]:
    """Frames of in-memory images (the Python API): a numpy array (H, W, 3) uint8, RGB (BGR with `bgr`),
    or (H, W) grey; a PIL image of any mode; a torch tensor (3, H, W) or (B, 3, H, W), float in [0, 1] or
    uint8, RGB; or a list of these (and of paths). Each is checked and converted now, before any work:
    a bad one is a one-line FovealError naming what was given."""
    items = list(source) if isinstance(source, (list, tuple)) else [source]
    if not items:
        raise FovealError("source: an empty list: give at least one image")
    named = []  # (name, pixels): a file keeps its path as its name, an array is image0, image1, ...
    for k, item in enumerate(items):
        where = f"source[{k}]" if isinstance(source, (list, tuple)) else "source"
        if isinstance(item, (str, Path)):
            named.extend((str(path), read_pixels(path)) for path in resolve_source(str(item)))
        else:
            first = len(named)
            named.extend((f"image{first + n}", pixels) for n, pixels in enumerate(image_array(item, bgr, where)))
    return [Frame(name, None, pixels, None) for name, pixels in named]


def image_array(item, bgr: bool, where: str) -> list[np.ndarray]:
    """The (H, W, 3) uint8 RGB frames of one in-memory image or tensor batch (see array_frames)."""
    if isinstance(item, Image.Image):
        return [pil_to_rgb(item)]
    if isinstance(item, np.ndarray):
        if item.dtype != np.uint8:
            raise FovealError(f"{where}: a numpy array of {item.dtype}; expected uint8 (0..255) pixels "
                              "(a float image in [0, 1] can be given as a torch tensor (3, H, W))")
        if item.ndim == 3 and item.shape[2] == 1:
            item = item[:, :, 0]
        if item.ndim == 2:
            return [np.repeat(checked_size(item, where)[:, :, None], 3, axis=2)]  # a new, contiguous array
        if item.ndim != 3 or item.shape[2] != 3:
            raise FovealError(f"{where}: a numpy array of shape {item.shape}; expected (H, W, 3) colour or (H, W) "
                              "grey pixels")
        checked_size(item, where)
        return [np.array(item[:, :, ::-1] if bgr else item, order="C")]  # a copy: the caller's stays untouched
    if isinstance(item, torch.Tensor):
        return tensor_frames(item, where)
    raise FovealError(f"{where}: {type(item).__name__} {str(item)[:40]!r} is not an image; expected a path, a numpy "
                      "array, a PIL image or a torch tensor (or a list of them)")


def tensor_frames(tensor, where: str) -> list[np.ndarray]:
    """(H, W, 3) uint8 frames of a (3, H, W) or (B, 3, H, W) RGB tensor (grey: one channel), float in [0, 1]."""
    batch = tensor.detach()[None] if tensor.ndim == 3 else tensor.detach()
    if batch.ndim != 4 or batch.shape[1] not in (1, 3):
        raise FovealError(f"{where}: a tensor of shape {tuple(tensor.shape)}; expected (3, H, W) or (B, 3, H, W)")
    if batch.dtype.is_floating_point:
        low, high = (batch.min().item(), batch.max().item()) if batch.numel() else (0.0, 0.0)
        if not (0 <= low and high <= 1):  # False for NaN too
            raise FovealError(f"{where}: a {batch.dtype} tensor with values from {low:.4g} to {high:.4g}; expected "
                              "values in [0, 1]")
        batch = (batch.float() * 255).round()
    elif batch.dtype != torch.uint8:
        raise FovealError(f"{where}: a tensor of {batch.dtype}; expected floats in [0, 1] (or uint8)")
    pixels = batch.to("cpu", torch.uint8).expand(-1, 3, -1, -1).permute(0, 2, 3, 1).numpy()
    return [np.ascontiguousarray(checked_size(frame, where)) for frame in pixels]


def checked_size(pixels: np.ndarray, where: str) -> np.ndarray:
    if not pixels.shape[0] or not pixels.shape[1]:
        raise FovealError(f"{where}: an empty image of {pixels.shape[1]} x {pixels.shape[0]} pixels")
    return pixels


def frame_stem(frame: Frame) -> str:
    """File stem for a frame's outputs: the image's stem, or <video>_<frame number>."""
    return Path(frame.name).stem + (f"_{frame.index:06d}" if frame.index is not None else "")
