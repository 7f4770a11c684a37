"""The pose task's other model families end to end. The stacked hourglass learns the landmarks of a landmark
folder (PCK and NME far better than every landmark at its mean place), with left and right kept through the
training flips, and exports to ONNX scoring the same; Keypoint R-CNN trains, scores OKS AP and predicts joints,
starts from torchvision's own .pth with other joints, and refuses ONNX export in one line."""

import csv
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

import foveal
from foveal.data.detection import DetectionData
from foveal.data.formats.coco import write_coco
from foveal.data.formats.pose import load_pose_data
from foveal.data.stickmen import STICKMEN_LAYOUT, stickmen_pose_data
from foveal.metrics.keypoints import landmark_metrics
from foveal.tasks.pose.task import PoseTask
from tests.test_cli import assert_one_line_error, main_in_process

WIDTH, HEIGHT = 96, 64  # wider than high: letterboxed in training, a 96 x 64 (rect) input in val
NAMES = ["left_eye", "right_eye", "nose", "left_mouth", "right_mouth"]
COLOURS = [(40, 40, 255), (255, 40, 40), (40, 220, 40), (0, 220, 255), (255, 220, 0)]  # BGR: each landmark its own
OFFSETS = np.array([(-0.4, -0.3), (0.4, -0.3), (0.0, 0.05), (-0.3, 0.45), (0.3, 0.45)])  # of the face's radius
NO_COLOUR = {"hsv_h": 0, "hsv_s": 0, "hsv_v": 0}


def write_faces(folder, count: int, seed: int) -> str:
    """A landmark folder of `count` 96 x 64 images, each one grey disc (a face) of random place and size whose 5
    landmarks are dots of distinct colours, the left ones on the image's left; returns the images folder
    (points.csv lies beside it)."""
    rng = np.random.default_rng(seed)
    images = folder / "images"
    images.mkdir(parents=True)
    rows = [["image"] + [f"{name}_{axis}" for name in NAMES for axis in "xy"]]
    for i in range(count):
        image = np.full((HEIGHT, WIDTH, 3), rng.integers(40, 120), np.uint8)
        radius = rng.uniform(0.22, 0.38) * HEIGHT
        centre = rng.uniform(radius, (WIDTH - radius, HEIGHT - radius))
        cv2.circle(image, tuple(int(v) for v in centre), int(radius), (160, 160, 160), -1)
        points = centre + OFFSETS * radius
        for (x, y), colour in zip(points, COLOURS):
            cv2.circle(image, (int(round(x)), int(round(y))), max(2, int(radius * 0.12)), colour, -1)
        cv2.imwrite(str(images / f"face{i:02d}.png"), image)
        rows.append([f"face{i:02d}.png"] + [f"{v:.2f}" for v in points.ravel()])
    with open(folder / "points.csv", "w", newline="") as f:
        csv.writer(f).writerows(rows)
    return images


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """(data=, the val images folder): 32 training faces and 16 others to score on."""
    root = tmp_path_factory.mktemp("faces")
    train, val = write_faces(root / "train", 32, 0), write_faces(root / "val", 16, 1)
    return f"landmarks:{train},{train.parent / 'points.csv'};{val},{val.parent / 'points.csv'}", val


@pytest.fixture(scope="module")
def hourglass(faces, tmp_path_factory):
    # hflip stays on (0.5, the default): training goes through flips, whose naming the next test checks
    return foveal.train("pose", data=faces[0], model="hourglass_s", imgsz=WIDTH, epochs=14, batch=8, weight_decay=0,
                        warmup_epochs=1, mosaic=0, scale=0.1, translate=0.05, degrees=0, **NO_COLOUR, workers=0,
                        plots=False, verbose=False, project=tmp_path_factory.mktemp("hg_runs"), name="learn")


def test_a_training_flip_keeps_left_on_the_left(faces):
    cfg = foveal.api.config("pose", data=faces[0], model="hourglass_s", imgsz=WIDTH, mosaic=0, scale=0, translate=0,
                            degrees=0, hflip=1.0, **NO_COLOUR)
    task = PoseTask.create(cfg)
    task.setup()
    assert task.layout.flip_idx == [1, 0, 2, 4, 3]  # from the left_/right_ names
    _, target = task.dataset("train", train=True)[0]
    joints = target["keypoints"][0]
    assert joints[0, 0] < joints[1, 0] and joints[3, 0] < joints[4, 0]  # left eye and mouth corner: image left


def test_hourglass_learns_landmarks_far_better_than_their_mean_places(hourglass, faces, tmp_path, capsys):
    first, last = hourglass.history[0], hourglass.history[-1]
    assert last["train_loss"] < 0.3 * first["train_loss"]
    result = main_in_process(capsys, "pose", "val", f"weights={hourglass.best}", f"project={tmp_path}", "name=val")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "pck=" in result.stdout and "nme=" in result.stdout  # printed, as OKS AP is
    metrics = foveal.val("pose", weights=hourglass.best, project=tmp_path, verbose=False).metrics
    assert metrics["pck"] == pytest.approx(hourglass.metrics["pck"], abs=1e-9)  # val reproduces training
    assert 0 <= metrics["map"] <= 1 and math.isfinite(metrics["nme"])  # OKS AP too, on the one detection
    # the trivial predictor: every landmark at its mean place over the training images
    data = load_pose_data(faces[0])
    mean = np.stack([item.keypoints[0] for item in data.splits["train"]]).mean(0)
    val = data.splits["val"]
    truth = np.stack([item.keypoints[0] for item in val])
    boxes = np.stack([item.boxes[0] for item in val])
    trivial = landmark_metrics(truth, np.broadcast_to(mean, truth.shape), boxes)
    assert metrics["pck"] > 0.8 and metrics["pck"] > trivial.pck + 0.5, (metrics["pck"], trivial.pck)
    assert metrics["nme"] < 0.25 * trivial.nme, (metrics["nme"], trivial.nme)


def test_hourglass_predicts_one_object_per_image(hourglass, faces, tmp_path, capsys):
    images = faces[1]
    result = main_in_process(capsys, "pose", "predict", f"weights={hourglass.best}", f"source={images}",
                             f"project={tmp_path}", "name=predict")
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads((tmp_path / "pose" / "predict" / "predictions.json").read_text())
    assert sorted(Path(e["file_name"]).name for e in entries) == sorted(p.name for p in images.iterdir())
    assert all(len(e["keypoints"]) == 3 * len(NAMES) for e in entries)


def test_hourglass_onnx_scores_as_pytorch(hourglass, faces, tmp_path, capsys):
    copy = tmp_path / "best.safetensors"  # export writes beside the weights
    copy.write_bytes(hourglass.best.read_bytes())
    assert main_in_process(capsys, "pose", "export", f"weights={copy}").returncode == 0
    ours = foveal.val("pose", weights=copy, data=faces[0], project=tmp_path, verbose=False).metrics
    graph = foveal.val("pose", weights=copy.with_suffix(".onnx"), data=faces[0], project=tmp_path, verbose=False).metrics
    assert abs(graph["pck"] - ours["pck"]) < 0.002 and abs(graph["nme"] - ours["nme"]) < 0.002, (ours, graph)


@pytest.fixture(scope="module")
def two_people(tmp_path_factory):
    """data= of two 96 px stick-figure images written as COCO keypoints (13 joints), and their folder."""
    items = stickmen_pose_data(imgsz=96, n_train=2, n_val=1, n_test=1).splits["train"]
    folder = tmp_path_factory.mktemp("two_people") / "set"
    write_coco(DetectionData(["person"], {"train": items}, keypoints=STICKMEN_LAYOUT), folder)
    annotations, images = folder / "train.json", folder / "train"
    return f"coco:{annotations},{images};{annotations},{images}", images


def test_keypoint_rcnn_trains_scores_and_predicts(two_people, tmp_path, capsys):
    data, images = two_people
    # one AdamW step from scratch at the default lr leaves no box with a score above 0 (its features grow
    # ~50x); a tiny lr keeps the untrained network's many guesses, for val and predict to score and write
    run = foveal.train("pose", data=data, model="keypointrcnn_resnet18_fpn", imgsz=96, epochs=1, batch=2, lr=1e-5,
                       mosaic=0, workers=0, plots=False, verbose=False, project=tmp_path, name="krcnn")
    assert all(math.isfinite(row["train_loss"]) for row in run.history)
    metrics = foveal.val("pose", weights=run.best, project=tmp_path, verbose=False).metrics
    assert 0 <= metrics["map"] <= 1 and 0 <= metrics["box_map"] <= 1  # OKS AP computed (an untrained guess)
    result = main_in_process(capsys, "pose", "predict", f"weights={run.best}", f"source={images}", "conf=0.01",
                             f"project={tmp_path}", "name=predict")
    assert result.returncode == 0, result.stderr[-2000:]
    entries = json.loads((tmp_path / "pose" / "predict" / "predictions.json").read_text())
    assert entries and all(len(e["keypoints"]) == 3 * STICKMEN_LAYOUT.count for e in entries)
    # two stages (proposals, then RoI heads) do not fit one graph: one line, naming what to use instead
    export = main_in_process(capsys, "pose", "export", f"weights={run.best}")
    assert_one_line_error(export, "yolo_n/s/m-pose or hourglass")


def test_keypoint_rcnn_starts_from_torchvisions_own_file_with_other_joints(two_people, tmp_path, capsys):
    coco = torchvision.models.detection.keypointrcnn_resnet50_fpn(weights=None, weights_backbone=None,
                                                                   num_keypoints=17)
    torch.save(coco.state_dict(), tmp_path / "keypointrcnn_coco.pth")
    foveal.train("pose", data=two_people[0], model="keypointrcnn_resnet50_fpn", imgsz=64, epochs=1, batch=2,
                 pretrained=tmp_path / "keypointrcnn_coco.pth", mosaic=0, workers=0, plots=False, verbose=True,
                 project=tmp_path, name="coco_start")
    note = next(line for line in capsys.readouterr().out.splitlines() if "keypointrcnn_coco.pth" in line)
    # 17 joints there, 13 here: the joints' predictor (weight, bias) starts anew, all else is loaded (both have
    # torchvision's 2 classes, person and background, so the box predictor fits)
    assert "re-initialised" in note and "keypoint_predictor.kps_score_lowres" in note, note
    loaded, total = map(int, note.split("loaded ")[1].split(" ")[0].split("/"))
    assert total - loaded == 2, note
