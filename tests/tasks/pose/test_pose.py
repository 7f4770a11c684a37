"""The pose task end to end: yolo_n-pose learns stick figures (OKS AP well above joints put at the box centre),
val reproduces training and its COCO results give pycocotools' AP, predict writes joints, export to ONNX
scores the same, track follows people, and mistakes are one line."""

import contextlib
import io
import json

import cv2
import numpy as np
import pytest
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import foveal
from foveal.data.detection import DetectionData
from foveal.data.formats.coco import write_coco
from foveal.data.stickmen import STICKMEN_LAYOUT, stickmen_pose_data
from foveal.metrics.detection import coco_evaluate
from tests.conftest import run_cli
from tests.test_cli import assert_one_line_error

SIZE = 128
JOINTS = STICKMEN_LAYOUT.count


@pytest.fixture(scope="module")
def people(tmp_path_factory):
    """(data= string, COCO file, image folder): 24 stick-figure images of 128 px written as COCO keypoints,
    trained and scored on the same images."""
    items = stickmen_pose_data(imgsz=SIZE, n_train=24, n_val=1, n_test=1).splits["train"]
    folder = tmp_path_factory.mktemp("people") / "set"
    write_coco(DetectionData(["person"], {"train": items}, keypoints=STICKMEN_LAYOUT), folder)
    annotations, images = folder / "train.json", folder / "train"
    return f"coco:{annotations},{images};{annotations},{images}", annotations, images


@pytest.fixture(scope="module")
def trained(people, tmp_path_factory):
    data, _, _ = people
    project = tmp_path_factory.mktemp("pose_runs")
    return foveal.train("pose", data=data, model="yolo_n-pose", imgsz=SIZE, epochs=40, batch=8, weight_decay=0,
                        warmup_epochs=2, mosaic=0, scale=0, translate=0, hflip=0, hsv_h=0, hsv_s=0, hsv_v=0,
                        workers=0, plots=False, verbose=False, project=project, name="learn")


def at_box_centres(detections: list[dict]) -> list[dict]:
    """The same detections with every joint put at its box's centre: what a model that learnt boxes only scores."""
    moved = []
    for det in detections:
        centres = (det["boxes"][:, :2] + det["boxes"][:, 2:]) / 2
        joints = torch.cat([centres[:, None].expand(-1, JOINTS, -1), torch.ones(len(centres), JOINTS, 1)], -1)
        moved.append({**det, "keypoints": joints})
    return moved


def test_yolo_n_pose_learns_joints_far_better_than_box_centres(trained, people, tmp_path):
    first, last = trained.history[0], trained.history[-1]
    assert last["train_keypoint"] < 0.5 * first["train_keypoint"] and last["train_loss"] < 0.6 * first["train_loss"]
    result = foveal.val("pose", weights=trained.best, project=tmp_path, name="val", save_json=True, verbose=False)
    assert result.metrics["map"] == pytest.approx(trained.metrics["map"], abs=1e-9)  # val reproduces training
    data = foveal.api.config("pose", data=people[0])
    from foveal.data.formats.pose import load_pose_data

    items = load_pose_data(data.data, val_fraction=0).splits["val"]
    detections = result.details["detections"]
    sigmas = [1 / JOINTS] * JOINTS  # the COCO file carries no sigmas: 1/K each
    centred = coco_evaluate(items, at_box_centres(detections), ["person"], iou_type="keypoints", kpt_sigmas=sigmas)
    assert result.metrics["map"] > 0.3 and result.metrics["map"] > centred.stats["map"] + 0.2, \
        (result.metrics["map"], centred.stats["map"])
    # save_json: COCO keypoint results, which pycocotools scores against the source file to the same OKS AP
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(people[1]))
        evaluation = COCOeval(truth, truth.loadRes(str(tmp_path / "pose" / "val" / "predictions.json")), "keypoints")
        evaluation.params.kpt_oks_sigmas = np.array(sigmas)
        evaluation.evaluate(), evaluation.accumulate(), evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(result.metrics["map"], abs=1e-9)


def test_predict_writes_and_draws_the_joints(trained, people, tmp_path):
    _, _, images = people
    result = run_cli("pose", "predict", f"weights={trained.best}", f"source={images}", "save_txt=true",
                     f"project={tmp_path}", "name=predict")
    assert result.returncode == 0, result.stderr[-2000:]
    folder = tmp_path / "pose" / "predict"
    entries = json.loads((folder / "predictions.json").read_text())
    assert entries and all(len(e["keypoints"]) == 3 * JOINTS for e in entries)
    x1, y1, w, h = entries[0]["bbox"]
    joints = np.reshape(entries[0]["keypoints"], (JOINTS, 3))
    seen = joints[:, 2] >= 0.5
    assert seen.sum() >= JOINTS // 2  # a person's joints, inside its box (a few pixels' slack)
    assert ((joints[seen, 0] >= x1 - 4) & (joints[seen, 0] <= x1 + w + 4)).all()
    lines = (folder / "labels" / f"{images.joinpath(entries[0]['file_name']).stem}.txt").read_text().splitlines()
    assert lines and all(len(line.split()) == 5 + 3 * JOINTS for line in lines)  # YOLO-pose: box, then x y v
    drawn = cv2.imread(str(folder / f"{images.joinpath(entries[0]['file_name']).stem}.jpg"))[:, :, ::-1]
    source = cv2.imread(entries[0]["file_name"])[:, :, ::-1]
    x, y = np.round(joints[np.argmax(joints[:, 2]), :2]).astype(int)
    assert np.abs(drawn[y, x].astype(int) - source[y, x]).max() > 40  # a joint's dot is drawn there


def test_onnx_export_scores_as_pytorch(trained, people, tmp_path):
    data = people[0]
    copy = tmp_path / "best.safetensors"  # export writes beside the weights
    copy.write_bytes(trained.best.read_bytes())
    assert run_cli("pose", "export", f"weights={copy}").returncode == 0
    ours = foveal.val("pose", weights=copy, data=data, project=tmp_path, verbose=False).metrics
    graph = foveal.val("pose", weights=copy.with_suffix(".onnx"), data=data, project=tmp_path, verbose=False).metrics
    assert abs(graph["map"] - ours["map"]) < 0.002 and abs(graph["box_map"] - ours["box_map"]) < 0.002


def test_track_follows_a_moving_person(trained, people, tmp_path):
    _, _, images = people
    still = cv2.imread(str(sorted(images.iterdir())[0]))
    video = tmp_path / "walk.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5, (SIZE, SIZE))
    for step in range(8):
        writer.write(np.roll(still, step, axis=1))  # one pixel a frame to the right
    writer.release()
    result = run_cli("pose", "track", f"weights={trained.best}", f"source={video}", f"project={tmp_path}", "name=t")
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads((tmp_path / "pose" / "t" / "predictions.json").read_text())
    assert entries and all("track_id" in e and len(e["keypoints"]) == 3 * JOINTS for e in entries)
    frames_of = {}
    for e in entries:
        frames_of.setdefault(e["track_id"], set()).add(e["frame"])
    assert max(len(frames) for frames in frames_of.values()) >= 6  # one person followed through the frames


@pytest.mark.parametrize("args, message", [
    (["data=shapes"], "data=shapes: not a pose data set; use "),
    (["data=stickmen", "kpt_sigmas=0.1,0.2"], "kpt_sigmas: expected 13 positive numbers (one per joint), got 2: "
                                              "'0.1,0.2'"),
    (["data=stickmen", "imgsz=100"], "imgsz: must be a multiple of 32 for pose, got 100"),
    (["data=stickmen", "model=yolo_n"], "unknown model 'yolo_n'"),
])
def test_mistakes_are_one_line(args, message, tmp_path):
    assert_one_line_error(run_cli("pose", "train", *args, "epochs=1", f"project={tmp_path}"), message)
