"""MOTChallenge files and folders, and foveal's simpler video layout, as TrackSequences (foveal/data/tracking.py).

A MOT file holds one object per line: `frame, id, x, y, w, h, conf, class, visibility[, ...]`, frames from 1,
(x, y) the box's top-left corner in pixels counted from 1 (foveal's boxes count from 0: read and written
shifted by one); commas or spaces between fields. In a ground-truth file (gt/gt.txt)
conf is the "consider" flag (0: ignore the row, as the benchmark does) and class the MOT17 class id
(1 pedestrian, ...; -1 where MOT15 gives none); a tracker's results file has conf its confidence and -1 in
the rest (`mot_lines` writes it).

A sequence folder: seqinfo.ini ([Sequence] name, frameRate, seqLength, imWidth, imHeight, imDir, imExt), the
frames in img1/ (000001.jpg ...), and gt/gt.txt when the ground truth is known. Without seqinfo.ini, the name
is the folder's, the frames are img1/'s images in name order, the size is the first image's and the frame rate
30. A sequence's `classes` are MOT17's class names, the file's class id k being name k - 1 (an id of 0 or -1:
the first class); seqinfo.ini's `classes=a,b` (a key foveal adds, other tools skip it) names them instead.

The video layout: `name.mp4` with its ground truth `name.txt` (MOT lines) beside it.
"""

import configparser
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from ...errors import FovealError
from ...files import read_text, write_bytes, write_text
from ..images import image_size, is_image
from ..stream import open_capture, stream_fps, stream_frames
from ..tracking import FrameTruth, TrackSequence

MOT17_CLASSES = ["pedestrian", "person_on_vehicle", "car", "bicycle", "motorbike", "non_mot_vehicle",
                 "static_person", "distractor", "occluder", "occluder_on_ground", "occluder_full", "reflection",
                 "crowd"]  # class ids 1..13
MOT17_DISTRACTORS = (2, 7, 8, 12)  # person_on_vehicle, static_person, distractor, reflection: boxes over them
# are neither hits nor false positives in the benchmark (MOT20 adds 6, non_mot_vehicle)
SEQINFO = "seqinfo.ini"
IMAGES = "img1"
GT_FILE = Path("gt") / "gt.txt"
DEFAULT_FPS = 30.0  # MOTChallenge's most common rate, for a folder without seqinfo.ini
MIN_FIELDS = 6  # frame, id, x, y, w, h; conf, class and visibility default to 1, -1, -1


class MotFrame(NamedTuple):
    """One frame's rows of a MOT file, in file order."""

    ids: np.ndarray  # (n,) int64
    boxes: np.ndarray  # (n, 4) float64 x1 y1 x2 y2
    scores: np.ndarray  # (n,) float64: the tracker's confidence, or ground truth's consider flag
    classes: np.ndarray  # (n,) int64 as in the file
    visibility: np.ndarray  # (n,) float64, -1 where not given


def empty_mot_frame() -> MotFrame:
    return MotFrame(np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64), np.zeros(0))


def read_mot_file(path, frames: int | None = None) -> list[MotFrame]:
    """One MotFrame per frame (entry 0 is frame 1): `frames` of them (a row past it is an error), or as many as
    the file's last frame; frames without rows are empty. A malformed line raises a FovealError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FovealError(f"{path}: no such MOT file")
    rows = []  # the 9 fields and the line number
    for number, line in enumerate(read_text(path).splitlines(), 1):
        if line.strip():
            rows.append(_row(line, path, number, frames) + [number])
    rows = np.array(rows, np.float64).reshape(-1, 10)
    rows = rows[np.argsort(rows[:, 0], kind="stable")]
    result = [empty_mot_frame() for _ in range(frames if frames is not None else int(rows[:, 0].max(initial=0)))]
    frame_numbers, starts = np.unique(rows[:, 0], return_index=True)
    for frame_number, chunk in zip(frame_numbers.astype(int), np.split(rows, starts[1:])):
        _check_unique(chunk[chunk[:, 1] != -1], path, frame_number)  # -1: no identity (detection files)
        x, y, w, h = chunk[:, 2:6].T
        x, y = x - 1, y - 1  # the files' pixels count from 1, foveal's (as numpy's and OpenCV's) from 0
        result[frame_number - 1] = MotFrame(chunk[:, 1].astype(np.int64), np.stack([x, y, x + w, y + h], 1),
                                            chunk[:, 6], chunk[:, 7].astype(np.int64), chunk[:, 8])
    return result


def _check_unique(chunk: np.ndarray, path: Path, frame_number: int) -> None:
    ids, first = np.unique(chunk[:, 1], return_index=True)
    if len(ids) < len(chunk):
        again = chunk[np.setdiff1d(np.arange(len(chunk)), first)[0]]  # the later line
        raise FovealError(f"{path}:{int(again[9])}: id {int(again[1])} is in frame {frame_number} twice")


def _row(line: str, path: Path, number: int, frames: int | None) -> list[float]:
    """frame, id, x, y, w, h, conf, class, visibility of one line, checked."""
    texts = line.replace(",", " ").split()
    try:
        values = [float(text) for text in texts[:9]]
    except ValueError:
        values = None
    problem = _problem(texts, values, frames)
    if problem:
        raise FovealError(f"{path}:{number}: {problem}")
    return values + [1.0, -1.0, -1.0][len(values) - MIN_FIELDS:]


def _problem(texts: list[str], values: list[float] | None, frames: int | None) -> str | None:
    """What is wrong with a line's fields (values: them as floats, None when one is not a number), or None."""
    if len(texts) < MIN_FIELDS:
        return f"{len(texts)} fields, a MOT line needs at least frame, id, x, y, w, h"
    if values is None or not all(map(math.isfinite, values)):
        for text in texts[:9]:  # which one
            try:
                if not math.isfinite(float(text)):
                    return f"{text!r} is not a finite number"
            except ValueError:
                return f"{text!r} is not a number"
    frame, ident = values[0], values[1]
    if frame != int(frame) or frame < 1:
        return f"frame {texts[0]} is not a whole number from 1"
    if frames is not None and frame > frames:
        return f"frame {int(frame)} is past the sequence's {frames} frames"
    if ident != int(ident):
        return f"id {texts[1]} is not a whole number"
    if values[4] < 0 or values[5] < 0:
        return f"negative box width or height ({texts[4]}, {texts[5]})"
    return None


def considered(frame: MotFrame, classes=None) -> MotFrame:
    """The ground-truth rows the benchmark scores: consider flag not 0, and of one of `classes` (file class ids,
    e.g. (1,) for pedestrians) when given."""
    keep = frame.scores != 0
    if classes is not None:
        keep &= np.isin(frame.classes, list(classes))
    return MotFrame(*(column[keep] for column in frame))


def mot_lines(frame_number: int, ids, boxes_xyxy, scores) -> str:
    """A tracker's results for one frame (1-based) in the MOTChallenge form, `frame,id,x,y,w,h,conf,-1,-1,-1`
    per line, each ending with a newline."""
    boxes = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
    return "".join(_line(frame_number, i, box, f"{float(s):.4f},-1,-1,-1")
                   for i, box, s in zip(np.asarray(ids).reshape(-1), boxes, np.asarray(scores).reshape(-1)))


def _line(frame_number: int, ident, box, rest: str) -> str:
    x1, y1, x2, y2 = box
    return f"{frame_number},{int(ident)},{x1 + 1:.2f},{y1 + 1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{rest}\n"


def is_mot_sequence(path) -> bool:
    path = Path(path)
    return path.is_dir() and ((path / SEQINFO).is_file() or (path / IMAGES).is_dir())


def mot_sequences(path, classes=None) -> list[TrackSequence]:
    """The sequence in folder `path`, or every sequence folder directly inside it, in name order."""
    path = Path(path)
    if is_mot_sequence(path):
        return [read_mot_sequence(path, classes)]
    folders = sorted(p for p in path.iterdir() if is_mot_sequence(p)) if path.is_dir() else []
    if not folders:
        raise FovealError(f"{path}: no MOTChallenge sequence there (a folder with {SEQINFO} or {IMAGES}/), "
                          f"nor directly inside it")
    return [read_mot_sequence(folder, classes) for folder in folders]


def read_mot_sequence(folder, classes=None) -> TrackSequence:
    """A MOTChallenge sequence folder. Its frames are image Paths; its gt (None without gt/gt.txt) keeps the
    considered rows of `classes` (file class ids; all when None), FrameTruth.classes being each's index in
    the sequence's `classes` names."""
    folder = Path(folder)
    info = _seqinfo(folder)
    image_folder = folder / info.get("imdir", IMAGES)
    images = _frame_images(image_folder, info.get("imext", ""))
    if not images:
        raise FovealError(f"{folder}: no images in {image_folder.name}/")
    if "seqlength" in info and _number(info, "seqlength", folder) != len(images):
        raise FovealError(f"{folder / SEQINFO}: seqLength={info['seqlength']} but {image_folder.name}/ holds "
                          f"{len(images)} images")
    if "imwidth" in info and "imheight" in info:
        width, height = int(_number(info, "imwidth", folder)), int(_number(info, "imheight", folder))
    else:
        width, height = image_size(images[0])
    names = [n.strip() for n in info["classes"].split(",")] if info.get("classes") else list(MOT17_CLASSES)
    gt = None
    if (folder / GT_FILE).is_file():
        gt, names = _truth(read_mot_file(folder / GT_FILE, len(images)), classes, names)
    fps = _number(info, "framerate", folder) if "framerate" in info else DEFAULT_FPS
    return TrackSequence(info.get("name", folder.name), fps, width, height, images, gt, names, folder)


def _frame_images(folder: Path, extension: str) -> list[Path]:
    """The frames in name order: the folder's images, those ending in `extension` when seqinfo.ini names one."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if is_image(p) and (not extension or p.suffix.lower() == extension.lower()))


def _seqinfo(folder: Path) -> dict:
    """seqinfo.ini's [Sequence] keys, lower-cased (configparser's way), or {} when there is none."""
    path = folder / SEQINFO
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(read_text(path))
    except configparser.Error as e:
        raise FovealError(f"{path}: not an ini file ({str(e).splitlines()[0]})") from None
    if not parser.has_section("Sequence"):
        raise FovealError(f"{path}: no [Sequence] section")
    return dict(parser["Sequence"])


def _number(info: dict, key: str, folder: Path) -> float:
    try:
        value = float(info[key])
    except ValueError:
        raise FovealError(f"{folder / SEQINFO}: {key}={info[key]!r} is not a number") from None
    if not value > 0:
        raise FovealError(f"{folder / SEQINFO}: {key}={info[key]} must be above 0")
    return value


def _truth(rows: list[MotFrame], classes, names: list[str]) -> tuple[list[FrameTruth], list[str]]:
    """FrameTruth per frame of a gt file's rows, and the class names, lengthened with the ids' own numbers
    when the file has ids past them."""
    kept = [considered(frame, classes) for frame in rows]
    index = [np.maximum(frame.classes, 1) - 1 for frame in kept]  # 0 and -1 (unspecified): the first class
    last = max((int(i.max()) for i in index if len(i)), default=-1)
    names = names + [str(k + 1) for k in range(len(names), last + 1)]
    return [FrameTruth(frame.ids, frame.boxes.astype(np.float32), i) for frame, i in zip(kept, index)], names


def read_video_sequence(video_path, classes=None, names=None) -> TrackSequence:
    """foveal's video layout: `name.mp4` and its ground truth `name.txt` (MOT lines; gt None without one).
    Every frame is decoded at once into an RGB array (for the short clips this layout is meant for). names:
    the class names (MOT17's when None), file class id k being names[k - 1]."""
    video_path = Path(video_path)
    capture = open_capture(str(video_path))
    fps = stream_fps(capture)
    frames = [frame.pixels for frame in stream_frames(capture, video_path.stem)]
    if not frames:
        raise FovealError(f"{video_path}: no frames could be decoded")
    names = list(names) if names is not None else list(MOT17_CLASSES)
    gt_path = video_path.with_suffix(".txt")
    gt = None
    if gt_path.is_file():
        gt, names = _truth(read_mot_file(gt_path, len(frames)), classes, names)
    height, width = frames[0].shape[:2]
    return TrackSequence(video_path.stem, fps, width, height, frames, gt, names, video_path.parent)


def write_mot_sequence(folder, sequence: TrackSequence, image_ext: str = ".jpg") -> Path:
    """`sequence` as a MOTChallenge folder: img1/000001.jpg ... (image Paths are copied as they are, arrays
    encoded as `image_ext`), gt/gt.txt when it has ground truth, and seqinfo.ini with its class names. Each
    file is written atomically."""
    folder = Path(folder)
    (folder / IMAGES).mkdir(parents=True, exist_ok=True)
    extension = image_ext
    for number, frame in enumerate(sequence.frames, 1):
        if isinstance(frame, (str, Path)):
            extension = Path(frame).suffix
            write_bytes(folder / IMAGES / f"{number:06d}{extension}", Path(frame).read_bytes())
            continue
        ok, encoded = cv2.imencode(image_ext, cv2.cvtColor(np.asarray(frame), cv2.COLOR_RGB2BGR))
        if not ok:
            raise FovealError(f"{sequence.name}: frame {number} could not be encoded as {image_ext}")
        write_bytes(folder / IMAGES / f"{number:06d}{image_ext}", encoded.tobytes())
    if sequence.gt is not None:
        (folder / GT_FILE.parent).mkdir(exist_ok=True)
        write_text(folder / GT_FILE, "".join(gt_lines(number, truth) for number, truth in
                                             enumerate(sequence.gt, 1)))
    fps = int(sequence.fps) if float(sequence.fps).is_integer() else sequence.fps
    write_text(folder / SEQINFO, f"[Sequence]\nname={sequence.name}\nimDir={IMAGES}\nframeRate={fps}\n"
                                 f"seqLength={len(sequence.frames)}\nimWidth={sequence.width}\n"
                                 f"imHeight={sequence.height}\nimExt={extension}\n"
                                 f"classes={','.join(sequence.classes)}\n")
    return folder


def gt_lines(number: int, truth: FrameTruth) -> str:
    """Ground-truth lines `frame,id,x,y,w,h,1,class,1` (considered, fully visible; class ids from 1)."""
    boxes = np.asarray(truth.boxes, np.float64).reshape(-1, 4)
    return "".join(_line(number, i, box, f"1,{int(c) + 1},1") for i, box, c in zip(truth.ids, boxes, truth.classes))
