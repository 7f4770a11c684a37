"""The predict loop shared by every task: runs a model over frames (data/stream.py reads them), writing
annotated images or video as it goes.

One frame at a time, as a real-time stream would be. Ctrl-C or the end of a stream stops cleanly,
keeping everything written so far (predictions.json included).
"""

import time
from contextlib import ExitStack
from pathlib import Path
from typing import Callable

import cv2
from tqdm import tqdm

from ..files import atomic_path, write_bytes, write_json


def run_stream(source, run_dir: Path, infer: Callable, annotate: Callable, results: list, save: bool,
               verbose: bool, log=print, unit: str = "frame", before_each: Callable | None = None
               ) -> tuple[int, float, bool]:
    """predicted_frames to the end, or to Ctrl-C. Returns (frames, seconds spent in infer, interrupted)."""
    count, seconds = 0, 0.0
    try:
        for *_, spent in predicted_frames(source, run_dir, infer, annotate, results, save, verbose, log, unit,
                                          before_each):
            count, seconds = count + 1, seconds + spent
    except KeyboardInterrupt:
        return count, seconds, True
    return count, seconds, False


def predicted_frames(source, run_dir: Path | None, infer: Callable, annotate: Callable, results: list, save: bool,
                     verbose: bool, log=print, unit: str = "frame", before_each: Callable | None = None):
    """For each frame of `source`: output = infer(frame pixels) (timed), then
    (image, summary) = annotate(frame, output); `image` (RGB) is written as <stem>.jpg or into
    <video>.mp4 at the source's frame rate when `save`. Yields (frame, output, image, seconds in infer),
    one frame at a time (the Python API's results). `results` is written to predictions.json at the
    end, also on Ctrl-C, an error or a consumer that stops early; nothing is written without `run_dir`.
    With `verbose`, a progress bar on a terminal for more than one frame (a camera's: a count and a rate).
    `before_each(frame)` is called before each frame's model call (the thread watch)."""
    writers = {}
    videos = ExitStack()  # each video under a temporary name, renamed over <video>.mp4 once its writer is released
    total = len(source) if isinstance(source, list) else getattr(source, "total", None)
    bar = tqdm(source, total=total, desc="predict", unit=unit, leave=False, dynamic_ncols=True,
               disable=not verbose or total == 1 or None)  # None: off where stderr is not a terminal
    try:
        for frame in bar:
            if before_each is not None:
                before_each(frame)
            started = time.perf_counter()
            output = infer(frame.pixels)
            spent = time.perf_counter() - started
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
                with tqdm.external_write_mode():  # the line above the bar, not through it
                    log(f"{frame.name}{'' if frame.index is None else f' frame {frame.index}'}: {summary}")
            yield frame, output, image, spent
    finally:
        bar.close()
        videos.close()  # what was written so far is kept, as predictions.json is
        if run_dir is not None:
            write_json(run_dir / "predictions.json", results, indent=1)
