"""The `track` mode: a box Predictor's detections followed through a video by a tracker (foveal/track).

A TrackingPredictor wraps the task's own Predictor: each frame is detected as `predict` detects it, the
tracker keeps the detections that continue or start a confirmed track, and the task's predictor annotates
those (its entries and drawings gain the track ids). On top: trails, tracks.csv, MOTChallenge lines, the
distinct objects per class, line crossings, and the scores against ground truth when there is one.
"""

import time
from collections import Counter, defaultdict, deque
from dataclasses import replace
from pathlib import Path

import numpy as np

from ..data.formats.mot import is_mot_sequence, mot_lines, mot_sequences, read_video_sequence
from ..data.stream import Counted, Frame, frames as source_frames, is_stream
from ..data.tracking import TrackSequence
from ..errors import FovealError
from ..files import write_json, write_text
from ..metrics.tracking import combine, sequence_counts
from ..ops.lines import crossing, line_side
from ..report import Section, Table, counted, text_table, write_report
from ..report.draw import draw_line, draw_trails
from ..track import tracker_from
from .modes import log_predicted, thread_watch, trained_task
from .runs import new_run_dir
from .stream import run_stream

TRAIL_FRAMES = 30  # the recent centres a trail draws
SUMMARY_COLUMNS = ("sequence", "track_id", "class", "first_frame", "last_frame", "frames", "mean_score")
SCORE_COLUMNS = ("HOTA", "DetA", "AssA", "LocA", "MOTA", "MOTP", "IDF1", "IDSW", "Frag", "MT", "ML", "FP", "FN")


def tracked_detections(det: dict, tracks) -> dict:
    """The rows of a frame's detections (boxes, scores, labels, and masks or any other per-object array) that
    the tracker kept, in the tracks' order, with each one's "track_ids"."""
    kept = {key: value[tracks.index] for key, value in det.items()}
    kept["track_ids"] = np.asarray(tracks.ids, np.int64)
    return kept


def follow(tracker, det: dict, pixels: np.ndarray, seconds: dict) -> dict:
    """tracked_detections of the tracks `tracker` continues or starts with this frame's detections; the
    tracker's time is added to seconds["track"] (the track mode's and the server's split per phase)."""
    started = time.perf_counter()
    tracks = tracker.update(det["boxes"], det["scores"], det["labels"], pixels)
    seconds["track"] = seconds.get("track", 0.0) + time.perf_counter() - started
    return tracked_detections(det, tracks)


def track_id(det: dict, row: int) -> dict:
    """{"track_id": id} of a detection row in `track` (a predictions.json entry's extra field), else {}."""
    return {"track_id": int(det["track_ids"][row])} if "track_ids" in det else {}


def parse_line(text: str) -> tuple[float, ...] | None:
    """line=x1,y1,x2,y2 (pixels) as four numbers, None when empty; one line naming the key otherwise."""
    if not text:
        return None
    try:
        line = tuple(float(v) for v in text.strip("[]() ").split(","))
    except ValueError:
        line = ()
    if len(line) != 4 or line[:2] == line[2:]:
        raise FovealError(f"line: expected x1,y1,x2,y2 in pixels (two different points), got '{text}'")
    return line


class TrackedObject:
    """What tracks.csv says of one track: its frames, score and class votes."""

    def __init__(self, frame: int):
        self.first = self.last = frame
        self.frames, self.score = 0, 0.0
        self.votes = Counter()  # class -> summed score: a detector's class may flicker along a track

    def add(self, frame: int, score: float, label: int):
        self.last, self.frames, self.score = frame, self.frames + 1, self.score + score
        self.votes[label] += score + 1e-9  # a zero score still votes

    @property
    def label(self) -> int:
        return self.votes.most_common(1)[0][0]


class TrackingPredictor:
    """The task's Predictor, plus a tracker per sequence (a new one for each video or MOT sequence)."""

    def __init__(self, base, cfg, run_dir: Path | None, scored: set[str] = frozenset()):
        self.base, self.cfg, self.run_dir = base, cfg, run_dir
        self.line = parse_line(cfg.line)
        self.scored = scored  # sequences with ground truth: their tracks are kept for the scores
        self.sequence, self.tracker, self.frame_number = None, None, 0
        self.objects: dict[str, dict[int, TrackedObject]] = {}
        self.predicted: dict[str, dict[int, tuple]] = defaultdict(dict)  # sequence -> frame -> (ids, boxes)
        self.mot_lines: dict[str, list[str]] = defaultdict(list)
        self.trails: dict[int, deque] = {}
        self.last_off_line: dict[int, tuple] = {}
        self.crossings = Counter()  # +1: left to right of the line, -1: right to left
        self.best_score = None  # of the detections the tracker was given: what to say when no track started
        base.seconds["track"] = 0.0

    # what the engine's stream loop and log read of a predictor
    results = property(lambda self: self.base.results)
    seconds = property(lambda self: self.base.seconds)
    device = property(lambda self: self.base.device)

    def start(self, frame: Frame):
        """Before each frame: a new sequence (another video, MOT sequence or camera) gets a new tracker."""
        name = frame.name if frame.index is not None else "images"  # a folder of images is one sequence
        if name != self.sequence:
            self.sequence, self.tracker, self.frame_number = name, tracker_from(self.cfg), 0
            self.objects[name] = {}
            self.trails, self.last_off_line = {}, {}
        self.frame_number = frame.index + 1 if frame.index is not None else self.frame_number + 1

    def infer(self, pixels: np.ndarray) -> dict:
        det = self.base.infer(pixels)
        if len(det["scores"]):
            self.best_score = max(self.best_score or 0.0, float(det["scores"].max()))
        return follow(self.tracker, det, pixels, self.base.seconds)

    def annotate(self, frame: Frame, det: dict):
        drawn, _ = self.base.annotate(frame, det)
        number, objects = self.frame_number, self.objects[self.sequence]
        centres = (det["boxes"][:, :2] + det["boxes"][:, 2:]) / 2
        rows = zip(det["track_ids"].tolist(), det["scores"].tolist(), det["labels"].tolist(), centres)
        for track, score, label, centre in rows:
            objects.setdefault(track, TrackedObject(number)).add(number, score, label)
            self.trails.setdefault(track, deque(maxlen=TRAIL_FRAMES)).append(tuple(centre))
            if self.line is not None:
                self.count_crossing(track, tuple(centre))
        if self.cfg.save_txt:  # kept until the end only when asked for: a camera runs for hours
            self.mot_lines[self.sequence].append(mot_lines(number, det["track_ids"], det["boxes"], det["scores"]))
        if self.sequence in self.scored:
            self.predicted[self.sequence][number - 1] = (det["track_ids"], det["boxes"])
        seen = set(det["track_ids"].tolist())
        for track in [t for t in self.trails if t not in seen and number - objects[t].last > TRAIL_FRAMES]:
            del self.trails[track]  # long gone: no trail to draw, nothing to hold
        if drawn is not None:
            if self.cfg.show_trails:
                draw_trails(drawn, {t: self.trails[t] for t in seen}, self.cfg.line_width)
            if self.line is not None:
                draw_line(drawn, self.line, self.crossing_text(), self.cfg.line_width)
        return drawn, f"{counted(len(seen), 'track')}, {counted(len(objects), 'object')} so far"

    def count_crossing(self, track: int, centre: tuple):
        """A track's centre crossing the line since its last position off the line counts once, by direction."""
        if line_side([centre], self.line)[0] == 0:
            return
        previous = self.last_off_line.get(track)
        if previous is not None and (way := crossing(previous, centre, self.line)):
            self.crossings[way] += 1
        self.last_off_line[track] = centre

    def crossing_text(self) -> str:
        return f"line: {self.crossings[1]} left to right, {self.crossings[-1]} right to left"

    def distinct(self) -> Counter:
        """Distinct tracks per class name, over every sequence (the polyp counter)."""
        return Counter(self.base.classes[obj.label] for objects in self.objects.values() for obj in objects.values())

    def summary_rows(self) -> list[list]:
        return [[sequence, track, self.base.classes[obj.label], obj.first, obj.last, obj.frames,
                 round(obj.score / obj.frames, 4)]
                for sequence, objects in self.objects.items() for track, obj in sorted(objects.items())]

    def finish(self) -> str:
        """tracks.csv, and with save_txt MOTChallenge results mot/<sequence>.txt; the run's last log line."""
        tracks = sum(len(objects) for objects in self.objects.values())
        hint = ""
        if not tracks and self.best_score is not None:  # the detector found things: the tracker's thresholds say no
            if hasattr(self.base, "nothing_found"):
                self.base.nothing_found.found_any = True  # its hint would blame conf=
            cfg = self.cfg
            hint = (f"; no detection started a track: the best scored {self.best_score:.3f} (lower new_track_thresh="
                    f"{cfg.new_track_thresh:g} and track_high_thresh={cfg.track_high_thresh:g} to follow them)")
        base_summary = self.base.finish()
        if self.run_dir is not None:
            write_text(self.run_dir / "tracks.csv", "\n".join(",".join(map(str, row)) for row in
                                                              [SUMMARY_COLUMNS, *self.summary_rows()]) + "\n")
            if self.cfg.save_txt:
                for sequence, lines in self.mot_lines.items():
                    (self.run_dir / "mot").mkdir(exist_ok=True)
                    write_text(self.run_dir / "mot" / f"{Path(sequence).name}.txt", "".join(lines))
        text = f"{counted(tracks, 'track')} ({base_summary}){hint}"
        return text + (f"; {self.crossing_text()}" if self.line is not None else "")


# ---- the sources: videos, cameras and images, or sequences with ground truth ----------------------------

def tracking_data(data: str, classes: tuple[int, ...] | None = None) -> list[TrackSequence]:
    """The sequences of data=: shapes_video, polyps_video, mot:FOLDER (a MOTChallenge sequence or a folder of
    them), or such a folder, or a video file with its MOT-format ground truth NAME.txt beside it; the ground
    truth of files keeps the MOT class ids `classes` (all when None)."""
    from ..data.videos import TRACKING_SETS, tracking_sequences

    if data in TRACKING_SETS:
        return tracking_sequences(data)
    path = data.removeprefix("mot:")
    if is_stream(path) and not path.isdigit():
        return [read_video_sequence(path, classes)]
    if data.startswith("mot:") or Path(path).is_dir():
        return mot_sequences(path, classes)
    raise FovealError(f"data: track scores {', '.join(TRACKING_SETS)}, mot:FOLDER (MOTChallenge sequences) or a "
                      f"video with its ground truth NAME.txt beside it; got '{data}'")


def sequence_frames(sequences: list[TrackSequence]) -> Counted:
    """The Frames of each sequence in turn (index: the frame's number - 1; image files read as they come)."""
    from ..data.images import read_pixels

    def each():
        for sequence in sequences:
            for index, image in enumerate(sequence.frames):
                pixels = image if isinstance(image, np.ndarray) else read_pixels(image)
                yield Frame(sequence.name, index, pixels, sequence.fps)

    return Counted(each(), sum(len(s.frames) for s in sequences))


def gt_classes(text: str) -> tuple[int, ...] | None:
    """gt_classes=1,2 as MOT class ids, None when empty; one line naming the key otherwise."""
    try:
        ids = tuple(int(v) for v in text.strip("[]() ").split(",") if v.strip())
    except ValueError:
        raise FovealError(f"gt_classes: expected MOT class ids such as 1 or 1,2, got '{text}'") from None
    return ids or None


def track_source(cfg) -> tuple[Counted, list[TrackSequence]]:
    """(the frames to track, the sequences among them that have ground truth to score)."""
    classes = gt_classes(cfg.gt_classes)
    if cfg.data:
        sequences = tracking_data(cfg.data, classes)
        missing = [s.name for s in sequences if s.gt is None]
        if missing:
            raise FovealError(f"data: {', '.join(missing)} has no ground truth (gt/gt.txt) to score")
        return sequence_frames(sequences), sequences
    if not cfg.source:
        raise FovealError("source: name a video, a camera index (0), images or a MOTChallenge folder; or data= "
                          "(shapes_video, polyps_video, mot:FOLDER) to score the tracks")
    source = Path(cfg.source)
    if source.is_dir() and (is_mot_sequence(source) or any(is_mot_sequence(p) for p in source.iterdir())):
        sequences = mot_sequences(source, classes)
        if cfg.gt and (missing := [s.name for s in sequences if s.gt is None]):
            raise FovealError(f"gt: {', '.join(missing)} has no gt/gt.txt to score against")
        return sequence_frames(sequences), [s for s in sequences if cfg.gt]
    if cfg.gt:
        raise FovealError(f"gt: {cfg.source} is not a MOTChallenge folder (img1/, gt/gt.txt): nothing to score against")
    return source_frames(cfg.source, cfg.vid_stride), []


# ---- the mode ---------------------------------------------------------------------------------------------

def track(task_class, cfg, log=print):
    """Follow every object of cfg.source (or data='s sequences) through its frames; writes runs/<task>/trackN
    with predictions.json (track_id per object), tracks.csv, annotated video, and with ground truth
    metrics.json and report.html. Returns the scores when there is ground truth, else the predictions."""
    parse_line(cfg.line), gt_classes(cfg.gt_classes)  # a mistake in the command fails before the model loads
    task, model, meta, device = trained_task(task_class, cfg, "track", log if cfg.verbose else None)
    if not task.finds_objects:
        raise FovealError(f"track: {meta['model']} finds no objects to follow (track takes a detector or an "
                          f"instance segmenter)")
    frames, scored = track_source(cfg)  # the data= the user gave (task.cfg has the training data's)
    # the task's own predictor writes what predict writes, but YOLO txt: track's save_txt is MOT lines
    task.cfg = replace(task.cfg, **{key: False for key in ("save_txt", "save_crop") if hasattr(task.cfg, key)})
    base = task.predictor(task.inference_model(model), device)
    run_dir = new_run_dir(cfg.project, task.name, cfg.name, cfg.exist_ok, stem="track")
    base.run_dir = run_dir
    predictor = TrackingPredictor(base, cfg, run_dir, {s.name for s in scored})
    watch = thread_watch(predictor, cfg, log)
    count, seconds, interrupted = run_stream(frames, run_dir, predictor.infer, predictor.annotate, predictor.results,
                                             cfg.save, cfg.verbose, log, "frame",
                                             lambda frame: (watch(frame), predictor.start(frame)))
    summary = predictor.finish()
    if cfg.verbose:
        log_predicted(task, predictor, count, seconds, interrupted, summary, run_dir, log, frames=True)
        if cfg.count:
            log("objects: " + (", ".join(f"{n} {name}" for name, n in sorted(predictor.distinct().items())) or "none"))
    if not scored:
        return predictor.results
    scores = track_scores(scored, predictor.predicted)
    write_json(run_dir / "metrics.json", scores)
    table = score_table(scores)
    write_report(run_dir / "report.html", f"{task.name} track {meta['model']} ({cfg.tracker}) on "
                                          f"{cfg.data or cfg.source}",
                 [Section("scores", [table]),
                  Section("tracks", [Table(list(SUMMARY_COLUMNS), predictor.summary_rows())])])
    if cfg.verbose:
        log(text_table(table))
        log(f"report: {run_dir / 'report.html'}")
    return scores


def track_scores(sequences: list[TrackSequence], predicted: dict) -> dict:
    """The scores of each sequence with ground truth and of all of them together (class-agnostic: an object
    is followed or not whatever class the detector gives it, as MOTChallenge scores its one class)."""
    empty = (np.zeros(0, np.int64), np.zeros((0, 4), np.float32))
    counts = {}
    for sequence in sequences:
        gt = [(truth.ids, truth.boxes) for truth in sequence.gt]
        ours = [predicted.get(sequence.name, {}).get(k, empty) for k in range(len(gt))]
        counts[sequence.name] = sequence_counts(gt, ours)
    return {**combine(list(counts.values())).metrics(), "sequences": {k: c.metrics() for k, c in counts.items()}}


def score_table(scores: dict) -> Table:
    rows = [[name, *(values[key] for key in SCORE_COLUMNS)] for name, values in scores["sequences"].items()]
    if len(rows) > 1:
        rows.append(["all", *(scores[key] for key in SCORE_COLUMNS)])
    return Table(["sequence", *SCORE_COLUMNS], rows)
