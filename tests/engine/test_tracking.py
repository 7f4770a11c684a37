"""The track mode's own work, on scripted detections (no model): ids into the task's entries, tracks.csv,
MOTChallenge lines, distinct objects, line crossings, a new tracker per sequence."""

import csv

import numpy as np

from foveal.api import config
from foveal.data.stream import Frame
from foveal.engine.tracking import TrackingPredictor, parse_line, track_id
from foveal.errors import FovealError

CLASSES = ["circle", "square"]


class ScriptedPredictor:
    """A box Predictor whose detections of frame k are given: what the track mode needs of a task's predictor."""

    def __init__(self, detections):
        self.detections, self.frame = detections, 0
        self.classes, self.results, self.seconds, self.device = CLASSES, [], {}, None

    def infer(self, pixels):
        det = self.detections[self.frame % len(self.detections)]
        self.frame += 1
        return det

    def annotate(self, frame, det):
        for k, label in enumerate(det["labels"]):
            self.results.append({"file_name": frame.name, "frame": frame.index, "category_id": int(label),
                                 **track_id(det, k)})
        return np.zeros((100, 100, 3), np.uint8), ""

    def finish(self):
        return f"{len(self.results)} detections"


def detections(boxes, scores, labels):
    return {"boxes": np.asarray(boxes, np.float32).reshape(-1, 4), "scores": np.asarray(scores, np.float32),
            "labels": np.asarray(labels, np.int64)}


def moving(frames: int):
    """A circle moving down 8 px a frame (across y = 50 at frame 4) and a square moving right (never across)."""
    return [detections([[40, 10 + 8 * k, 60, 30 + 8 * k], [5 + 6 * k, 70, 25 + 6 * k, 90]], [0.9, 0.8], [0, 1])
            for k in range(frames)]


def run(predictor, names_and_frames):
    for name, count in names_and_frames:
        for index in range(count):
            frame = Frame(name, index, np.zeros((100, 100, 3), np.uint8), 10.0)
            predictor.start(frame)
            predictor.annotate(frame, predictor.infer(frame.pixels))
    return predictor.finish()


def test_tracks_ids_lines_and_crossings(tmp_path):
    cfg = config("detect", line="0,50,100,50", save_txt=True, count=True)
    base = ScriptedPredictor(moving(10))
    predictor = TrackingPredictor(base, cfg, tmp_path)
    summary = run(predictor, [("first", 10), ("second", 10)])
    assert {entry["track_id"] for entry in base.results if entry["file_name"] == "first"} == {1, 2}
    # one id per object for the whole video, and a new tracker (ids from 1 again) for the next video
    for name in ("first", "second"):
        ids = {(e["category_id"], e["track_id"]) for e in base.results if e["file_name"] == name}
        assert ids == {(0, 1), (1, 2)} or ids == {(0, 2), (1, 1)}, ids
    assert predictor.crossings == {1: 2}  # the circle crosses left to right (downwards) once per video
    assert "2 left to right, 0 right to left" in summary
    assert predictor.distinct() == {"circle": 2, "square": 2}
    rows = list(csv.DictReader((tmp_path / "tracks.csv").open()))
    assert len(rows) == 4 and {r["frames"] for r in rows} == {"10"} and {r["first_frame"] for r in rows} == {"1"}
    assert {(r["sequence"], r["class"]) for r in rows} == {(s, c) for s in ("first", "second") for c in CLASSES}
    lines = (tmp_path / "mot" / "first.txt").read_text().splitlines()
    assert len(lines) == 20
    frame, track, x, y, w, h, score, *rest = lines[0].split(",")
    assert frame == "1" and rest == ["-1", "-1", "-1"] and round(float(score), 4) in (0.9, 0.8)
    assert (float(x), float(y), float(w), float(h)) in ((41, 11, 20, 20), (6, 71, 20, 20))  # left, top from 1


def test_bad_line_is_one_line():
    for text in ("1,2,3", "a,b,c,d", "5,5,5,5"):
        try:
            parse_line(text)
        except FovealError as e:
            assert str(e).startswith("line: expected x1,y1,x2,y2") and "\n" not in str(e)
        else:
            raise AssertionError(text)
    assert parse_line("") is None and parse_line("0,1,2,3") == (0, 1, 2, 3)
