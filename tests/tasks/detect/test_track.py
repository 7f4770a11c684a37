"""`detect track` end to end with the shared trained detector: two of its scenes panning under the camera,
written as a MOTChallenge folder and as a video with its ground truth, tracked and scored."""

import csv
import json

import numpy as np
import pytest

import foveal
from foveal.data.formats.mot import write_mot_sequence
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.data.tracking import FrameTruth, TrackSequence
from foveal.data.videos import write_track_video
from foveal.metrics.tracking import score_mot_files
from tests.conftest import run_cli
from tests.test_cli import main_in_process

# the shared detector is trained briefly: its scores on these scenes are 0.4 to 0.8, under ByteTrack's defaults
THRESHOLDS = ("conf=0.05", "track_low_thresh=0.05", "track_high_thresh=0.3", "new_track_thresh=0.3")


def panning(name: str, scene, frames: int = 10) -> TrackSequence:
    """The scene moving right and down under a still camera (1 and 0.5 px a frame), its boxes moving with it."""
    height, width = scene.image.shape[:2]
    fill = np.median(scene.image.reshape(-1, 3), 0).astype(np.uint8)
    images, truth = [], []
    for k in range(frames):
        dx, dy = k, k // 2
        image = np.empty_like(scene.image)
        image[:] = fill
        image[dy:, dx:] = scene.image[:height - dy, :width - dx]
        boxes = np.minimum(np.asarray(scene.boxes, np.float32) + [dx, dy, dx, dy], [width, height, width, height])
        images.append(image)
        truth.append(FrameTruth(np.arange(1, len(boxes) + 1), boxes.astype(np.float32), np.asarray(scene.labels)))
    return TrackSequence(name, 10.0, width, height, images, truth, list(SHAPE_CLASSES))


@pytest.fixture(scope="module")
def sequences(tmp_path_factory):
    """Two scenes of the detector's training set (those it finds best: the wide_coco fixture's seed)."""
    scenes = make_scene_set(16, (100, 150), seed=5, min_objects=1, max_objects=2, min_scale=0.3)
    root = tmp_path_factory.mktemp("mot")
    made = [panning(f"pan-{k}", scenes[k]) for k in (0, 2)]
    for sequence in made:
        write_mot_sequence(root / "sequences" / sequence.name, sequence)
    write_track_video(made[0], root / "pan-0.mp4")
    return root


def test_track_scores_a_mot_folder(trained_detector, sequences, tmp_path):
    best = trained_detector[0]
    result = run_cli("detect", "track", f"weights={best}", f"source={sequences / 'sequences'}", "gt=true",
                     "save_txt=true", "show_trails=true", "count=true", *THRESHOLDS, f"project={tmp_path}", "name=t")
    assert result.returncode == 0, result.stderr[-2000:]
    run = tmp_path / "detect" / "t"
    scores = json.loads((run / "metrics.json").read_text())
    # every object followed with one identity: a tracker that lost or swapped them would fall short
    assert scores["MOTA"] >= 0.9 and scores["IDF1"] >= 0.9 and scores["IDSW"] == 0 and scores["HOTA"] > 0.6
    assert set(scores["sequences"]) == {"pan-0", "pan-2"}
    for name, own in scores["sequences"].items():  # the written MOT results score the same from their files
        again = score_mot_files(run / "mot" / f"{name}.txt", sequences / "sequences" / name / "gt" / "gt.txt")
        # (the files' boxes are rounded to 0.01 px: a match's IoU may cross one of HOTA's 19 thresholds)
        assert again["MOTA"] == pytest.approx(own["MOTA"]) and again["HOTA"] == pytest.approx(own["HOTA"], abs=0.01)
    rows = list(csv.DictReader((run / "tracks.csv").open()))
    assert len(rows) == 3 and all(row["frames"] == "10" for row in rows)  # 2 + 1 objects, each seen throughout
    predictions = json.loads((run / "predictions.json").read_text())
    assert len(predictions) == 30 and all("track_id" in entry for entry in predictions)
    assert (run / "pan-0.mp4").stat().st_size > 0 and (run / "report.html").is_file()
    assert "objects: " in result.stdout and "HOTA" in result.stdout
    # gt_classes keeps only the ground truth of those MOT class ids: none here is class 99, every track is false
    only = foveal.run("detect", "track", weights=best, source=sequences / "sequences", gt=True, gt_classes="99",
                      **dict(arg.split("=") for arg in THRESHOLDS), project=tmp_path, name="t99", save=False,
                      verbose=False)
    assert only["gt_dets"] == 0 and only["FP"] == 30


def test_track_on_onnx_gives_the_same_ids(trained_detector, sequences, tmp_path, capsys):
    best = trained_detector[0]
    runs = {}
    for weights in (best, best.with_suffix(".onnx")):
        name = weights.suffix[1:]
        result = main_in_process(capsys, "detect", "track", f"weights={weights}", f"source={sequences / 'pan-0.mp4'}",
                                 "save=false", *THRESHOLDS, f"project={tmp_path}", f"name={name}", "tracker=botsort")
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = json.loads((tmp_path / "detect" / name / "predictions.json").read_text())
    torch_run, onnx_run = runs["safetensors"], runs["onnx"]
    assert len(torch_run) == len(onnx_run) == 20
    assert [(e["frame"], e["track_id"]) for e in torch_run] == [(e["frame"], e["track_id"]) for e in onnx_run]
    assert np.allclose([e["bbox"] for e in torch_run], [e["bbox"] for e in onnx_run], atol=0.5)


def test_track_scores_a_video_with_its_ground_truth(trained_detector, sequences, tmp_path, capsys):
    result = main_in_process(capsys, "detect", "track", f"weights={trained_detector[0]}",
                             f"data={sequences / 'pan-0.mp4'}", "save=false", *THRESHOLDS, f"project={tmp_path}", "name=v")
    assert result.returncode == 0, result.stderr[-2000:]
    scores = json.loads((tmp_path / "detect" / "v" / "metrics.json").read_text())
    assert scores["MOTA"] >= 0.9 and scores["IDSW"] == 0 and list(scores["sequences"]) == ["pan-0"]


@pytest.mark.parametrize("args, message", [
    (["source=SEQ/pan-0/img1", "gt=true"], "gt: "),
    (["data=no_such_set"], "data: "),
    (["source=SEQ/pan-0", "line=1,2,3"], "line: expected x1,y1,x2,y2"),
    (["source=SEQ/pan-0", "tracker=sort"], "tracker: expected one of bytetrack, botsort, got 'sort'"),
    (["source=SEQ/pan-0", "track_buffer=0"], "track_buffer: 0 is out of range"),
    (["source=SEQ/pan-0", "gt=true", "gt_classes=people"], "gt_classes: expected MOT class ids"),
])
def test_track_mistakes_are_one_line(trained_detector, sequences, tmp_path, args, message, capsys):
    args = [arg.replace("SEQ", str(sequences / "sequences")) for arg in args]
    result = main_in_process(capsys, "detect", "track", f"weights={trained_detector[0]}", *args, f"project={tmp_path}")
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, \
        result.stderr
    assert not (tmp_path / "detect").exists()  # refused before the run folder
