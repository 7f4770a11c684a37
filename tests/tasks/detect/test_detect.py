"""Detection end to end through the CLI on a small YOLO-format copy of the synthetic scenes."""

import contextlib
import io
import json
import os
import re
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import foveal
from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats import load_detection_data
from foveal.data.formats.yolo import write_yolo
from foveal.data.stream import Frame, stream_fps
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.errors import FovealError
from foveal.report.draw import draw_boxes
from foveal.tasks.detect.task import DetectConfig, DetectTask
from foveal.tasks.box_predict import BoxPredictor

from tests.conftest import WIDE_CATEGORY_IDS, run_cli


def scenes_as_items(n, size, seed):
    return [ImageAnnotations("", size, size, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
            for s in make_scene_set(n, size, seed, min_objects=1, max_objects=3, min_scale=0.25)]


@pytest.fixture(scope="module")
def yolo_data(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    data = DetectionData(list(SHAPE_CLASSES), {"train": scenes_as_items(24, 96, 1), "val": scenes_as_items(8, 96, 2)})
    return write_yolo(data, root / "yolo")


@pytest.fixture(scope="module", params=["off", "bf16"])  # both precision paths, whatever this CPU would choose
def trained(yolo_data, tmp_path_factory, request):
    project = tmp_path_factory.mktemp("runs")
    result = run_cli("detect", "train", f"data={yolo_data}", "model=yolo_n", "imgsz=96", "epochs=2", "batch=8",
                     "close_mosaic=1", f"amp={request.param}", f"project={project}", "name=e2e",
                     "threads=1", "workers=0")
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


def test_training_is_the_same_with_and_without_loader_workers(yolo_data, tmp_path):
    # each item is augmented from (seed, epoch, index), whichever process loads it; persistent workers
    # still learn the epoch (mosaic is off in the second one: close_mosaic=1)
    histories = [foveal.train("detect", data=str(yolo_data), model="yolo_n", imgsz=96, epochs=2, batch=8,
                              close_mosaic=1, amp="off", workers=workers, threads=1, project=tmp_path,
                              name=f"workers{workers}", verbose=False).history for workers in (0, 2)]
    for history in histories:
        for row in history:
            row.pop("seconds")
    assert histories[0] == histories[1]


def test_train_writes_the_run_folder(trained):
    project, result = trained
    run = project / "detect" / "e2e"
    for name in ("config.yaml", "metrics.csv", "best.safetensors", "last.safetensors", "report.html"):
        assert (run / name).is_file(), name
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_loss", "map", "map50", "map75", "map_small", "mar100", "lr"} <= set(header)
    table = [line.split() for line in result.stdout.splitlines() if line.lstrip().startswith(("epoch ", "2/2"))]
    assert table[0] == ["epoch", "train_loss", "map50", "map", "lr", "seconds"] and table[1][0] == "2/2", result.stdout
    assert "there is no validation loss" in (run / "report.html").read_text()


def test_val_reproduces_the_training_metrics(trained, yolo_data):
    project, _ = trained
    best = project / "detect" / "e2e" / "best.safetensors"
    again = foveal.val("detect", weights=best, project=project, verbose=False, threads=1)  # as trained: the same sums
    rows = (project / "detect" / "e2e" / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), [r.split(",") for r in rows[1:]]
    best_row = max(values, key=lambda r: float(r[header.index("map")]))
    assert again.metrics["map"] == pytest.approx(float(best_row[header.index("map")]), abs=1e-9)


def test_val_scores_every_image_of_data_given_as_one_set(trained, yolo_data, tmp_path):
    from foveal.data.formats.coco import write_coco

    project, _ = trained
    best = project / "detect" / "e2e" / "best.safetensors"
    val_items = load_detection_data(str(yolo_data)).splits["val"]
    write_coco(DetectionData(list(SHAPE_CLASSES), {"instances_val": val_items}), tmp_path / "coco")
    data = f"coco:{tmp_path / 'coco' / 'instances_val.json'},{tmp_path / 'coco' / 'instances_val'}"
    whole = foveal.val("detect", weights=best, data=data, project=tmp_path, verbose=False)
    assert len(whole.details["detections"]) == len(val_items) == 8  # not a held-back 20% of them
    # the same images as the training run's val split: the same numbers
    again = foveal.val("detect", weights=best, project=tmp_path, verbose=False)
    assert whole.metrics["map"] == pytest.approx(again.metrics["map"], abs=1e-9)


def test_predict_images_and_video(trained, yolo_data, tmp_path):
    project, _ = trained
    best = project / "detect" / "e2e" / "best.safetensors"
    images = yolo_data.parent / "images" / "val"
    result = run_cli("detect", "predict", f"weights={best}", f"source={images}", "conf=0.01", "save_txt=true",
                     f"project={tmp_path}", "name=images")
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "detect" / "images"
    assert len(list(out.glob("*.jpg"))) == 8 and len(list((out / "labels").glob("*.txt"))) == 8
    detections = json.loads((out / "predictions.json").read_text())
    assert all(set(d) >= {"image_id", "category_id", "bbox", "score"} for d in detections)
    assert "frames/s" in result.stdout
    assert re.search(r"per image: [\d.]+ ms preprocess, [\d.]+ ms inference, [\d.]+ ms postprocess", result.stdout)

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 12, (96, 96))
    for item in scenes_as_items(5, 96, 3):
        writer.write(cv2.cvtColor(item.pixels, cv2.COLOR_RGB2BGR))
    writer.release()
    result = run_cli("detect", "predict", f"weights={best}", f"source={video}", f"project={tmp_path}", "name=video")
    assert result.returncode == 0, result.stderr[-2000:]
    written = cv2.VideoCapture(str(tmp_path / "detect" / "video" / "clip.mp4"))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == 5
    assert written.get(cv2.CAP_PROP_FPS) == pytest.approx(12)  # the source's rate, not a fixed 30
    assert re.search(r"^5 frames, \d+ detections?", result.stdout, re.M), result.stdout  # a video's: frames


class FakeCapture:
    def __init__(self, fps):
        self.fps = fps

    def get(self, prop):
        assert prop == cv2.CAP_PROP_FPS
        return self.fps


def test_stream_fps_falls_back_to_30_when_unknown():
    assert stream_fps(FakeCapture(12.0)) == 12.0
    assert stream_fps(FakeCapture(0.0)) == stream_fps(FakeCapture(float("nan"))) == 30.0


def test_missing_camera_is_one_clear_error(trained, tmp_path, capfd):
    project, _ = trained
    best = project / "detect" / "e2e" / "best.safetensors"
    with pytest.raises(FovealError, match=r"^camera 99: cannot open") as error:  # the CLI prints it as one line
        foveal.predict("detect", weights=best, source="99", project=tmp_path, save=True)
    assert "\n" not in str(error.value)
    assert capfd.readouterr().err == ""  # nor does OpenCV log its attempts at the device
    assert not (tmp_path / "detect").exists()  # it failed before making a run folder


def test_convert_and_info(yolo_data, tmp_path):
    result = run_cli("detect", "convert", f"src={yolo_data}", f"dst=coco:{tmp_path / 'coco'}")
    assert result.returncode == 0 and "as COCO" in result.stdout, result.stderr
    data = foveal.data.formats.load_detection_data(f"coco:{tmp_path / 'coco'}")
    assert len(data.splits["train"]) == 24 and data.classes == list(SHAPE_CLASSES)
    info = run_cli("detect", "info", "model=yolo_n", "imgsz=320")
    assert info.returncode == 0 and "GMACs" in info.stdout


def test_bad_label_is_one_line_with_file_and_line(yolo_data, tmp_path):
    bad = sorted((yolo_data.parent / "labels" / "train").glob("*.txt"))[0]
    original = bad.read_text()
    try:
        bad.write_text(original + "3 0.5 0.5 0.2\n")
        result = run_cli("detect", "train", f"data={yolo_data}", "strict=true", "epochs=1", f"project={tmp_path}")
        assert result.returncode == 2 and "Traceback" not in result.stderr
        line = result.stderr.strip().splitlines()
        assert len(line) == 1 and f"{bad.name}:{len(original.splitlines()) + 1}" in line[0], result.stderr
    finally:
        bad.write_text(original)


def boxes_by_file(detections: list[dict]) -> dict:
    """{image stem: (N, 4) xyxy boxes} of predictions.json entries, in their order."""
    found = defaultdict(list)
    for d in detections:
        x, y, w, h = d["bbox"]
        found[Path(d["file_name"]).stem].append([x, y, x + w, y + h])
    return {stem: np.array(boxes) for stem, boxes in found.items()}


def test_save_txt_labels_read_back_as_yolo_data(trained, yolo_data, tmp_path):
    project, _ = trained
    best, images = project / "detect" / "e2e" / "best.safetensors", yolo_data.parent / "images" / "val"
    options = dict(weights=best, source=images, conf=0.01, save_txt=True, project=tmp_path, threads=1)
    detections = [d for result in foveal.predict("detect", name="plain", **options) for d in result.predictions]
    assert detections, "the tiny model should find something at conf=0.01"
    # the predicted labels beside their images in the YOLO layout, read back by foveal's reader (strict)
    labels = tmp_path / "readback" / "labels"
    labels.mkdir(parents=True)
    os.symlink(images, tmp_path / "readback" / "images")
    for txt in (tmp_path / "detect" / "plain" / "labels").glob("*.txt"):
        (labels / txt.name).write_text(txt.read_text())
    (tmp_path / "readback" / "data.yaml").write_text(f"train: images\nnames: {list(SHAPE_CLASSES)}\n")
    data = load_detection_data(str(tmp_path / "readback" / "data.yaml"), strict=True, val_fraction=0)
    read = {Path(item.image).stem: item for item in data.splits["train"]}
    expected = boxes_by_file(detections)
    assert set(read) == {p.stem for p in images.iterdir()}
    for stem, item in read.items():
        # 6 decimals of 96 px, and predictions.json's 2 decimals
        np.testing.assert_allclose(item.boxes.reshape(-1, 4), expected.get(stem, np.zeros((0, 4))), atol=0.02)
    assert sorted(int(d["category_id"]) for d in detections) == sorted(
        label for item in read.values() for label in item.labels.tolist())

    detections = [d for result in foveal.predict("detect", name="conf", save_conf=True, **options)
                  for d in result.predictions]
    lines = [line.split() for stem in sorted({Path(d["file_name"]).stem for d in detections})
             for line in (tmp_path / "detect" / "conf" / "labels" / f"{stem}.txt").read_text().splitlines()]
    ordered = sorted(detections, key=lambda d: (Path(d["file_name"]).stem, d["image_id"]))
    assert len(lines) == len(ordered) and all(len(fields) == 6 for fields in lines)
    np.testing.assert_allclose([float(fields[5]) for fields in lines], [d["score"] for d in ordered], atol=1e-5)


class FixedDetector(torch.nn.Module):
    """Three boxes in a 64x64 input: 'a' and 'b' on one object (IoU 0.82), 'c' apart."""

    def forward(self, x):
        return [{"boxes": torch.tensor([[0.0, 0, 20, 20], [1, 1, 21, 21], [40, 40, 60, 60]]),
                 "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.tensor([0, 1, 2])}]


def fixed_predictor(tmp_path, **options) -> BoxPredictor:
    meta = {"classes": ["a", "b", "c"], "imgsz": 64, "model": "yolo_n"}
    predictor = BoxPredictor(DetectTask.trained(DetectConfig(**options), meta), FixedDetector(), torch.device("cpu"))
    predictor.run_dir = tmp_path
    return predictor


def test_the_weights_meta_enters_the_task_once_and_the_predictor_reads_it():
    meta = {"classes": ["a", "b", "c"], "imgsz": 64, "model": "yolo_n", "onnx": {"dynamic": False}}
    task = DetectTask.trained(DetectConfig(imgsz=320), meta)
    predictor = task.predictor(FixedDetector(), torch.device("cpu"))
    assert task.meta is meta and task.cfg.imgsz == 64 and task.cfg.model == "yolo_n"
    assert predictor.classes == ["a", "b", "c"] and predictor.imgsz == 64
    assert predictor.stride == 0  # a fixed-size graph: letterboxed to its square, read from the same meta


@pytest.mark.parametrize("options, kept", [
    ({}, [0, 1, 2]),
    ({"agnostic_nms": True}, [0, 2]),  # 'b' lies on 'a', which scores higher
    ({"classes": "b,2"}, [1, 2]),
    ({"classes": "[0, 1]"}, [0, 1]),  # a YAML or Python list, as the config turns it into text
    ({"classes": "b,c", "agnostic_nms": True}, [1, 2]),  # filtered before NMS: 'a' suppresses nothing
])
def test_predict_classes_and_agnostic_nms(tmp_path, options, kept):
    det = fixed_predictor(tmp_path, **options).infer(np.zeros((64, 64, 3), np.uint8))
    assert det["labels"].tolist() == kept


def test_save_crop_writes_each_box_under_its_class(tmp_path):
    predictor = fixed_predictor(tmp_path, save_crop=True, save=False)
    ramp = np.linspace(0, 255, 64).astype(np.uint8)
    pixels = np.stack([np.tile(ramp, (64, 1)), np.tile(ramp[:, None], (1, 64)), np.full((64, 64), 90, np.uint8)], -1)
    predictor.annotate(Frame("scene.png", None, pixels, None), predictor.infer(pixels))
    crops = sorted(str(path.relative_to(tmp_path / "crops")) for path in (tmp_path / "crops").rglob("*.jpg"))
    assert crops == ["a/scene_0.jpg", "b/scene_1.jpg", "c/scene_2.jpg"]
    crop = cv2.cvtColor(cv2.imread(str(tmp_path / "crops" / "c" / "scene_2.jpg")), cv2.COLOR_BGR2RGB)
    assert crop.shape == (20, 20, 3) and np.abs(crop.astype(int) - pixels[40:60, 40:60]).mean() < 3


def test_predict_unknown_class_is_one_line(tmp_path):
    with pytest.raises(FovealError, match=r"^classes: 'dog' is not a class of these weights \(0..2: a, b, c\)$"):
        fixed_predictor(tmp_path, classes="0,dog")
    with pytest.raises(FovealError, match=r"^classes: '3' is not"):
        fixed_predictor(tmp_path, classes="3")


def test_predict_hide_labels_draws_bare_boxes(tmp_path):
    pixels = np.full((64, 64, 3), 90, np.uint8)
    predictor = fixed_predictor(tmp_path, hide_labels=True)
    det = predictor.infer(pixels)
    drawn, _ = predictor.annotate(Frame("x.png", None, pixels, None), det)
    assert np.array_equal(drawn, draw_boxes(pixels, det["boxes"], det["labels"], ["a", "b", "c"], captions=False))
    assert not np.array_equal(drawn, draw_boxes(pixels, det["boxes"], det["labels"], ["a", "b", "c"]))


def test_predict_hide_conf_draws_class_names_only(tmp_path):
    pixels = np.full((64, 64, 3), 90, np.uint8)
    predictor = fixed_predictor(tmp_path, hide_conf=True)
    det = predictor.infer(pixels)
    drawn, _ = predictor.annotate(Frame("x.png", None, pixels, None), det)
    assert np.array_equal(drawn, draw_boxes(pixels, det["boxes"], det["labels"], ["a", "b", "c"]))
    assert not np.array_equal(drawn, draw_boxes(pixels, det["boxes"], det["labels"], ["a", "b", "c"], det["scores"]))


def test_video_stride_predicts_every_nth_frame_at_the_source_speed(tmp_path):
    from foveal.data.stream import frames

    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (64, 64))
    for k in range(5):
        writer.write(np.full((64, 64, 3), 40 * k, np.uint8))
    writer.release()
    every_other = list(frames(str(video), 2))
    assert [f.index for f in every_other] == [0, 2, 4] and every_other[0].fps == 5.0
    assert abs(int(every_other[1].pixels.mean()) - 80) < 8  # really the source's third frame


def test_a_predicted_video_appears_only_once_complete(tmp_path):
    from foveal.engine.stream import run_stream

    target = tmp_path / "clip.mp4"
    pixels = [np.full((32, 48, 3), 50 * k, np.uint8) for k in range(4)]
    seen_while_writing = []

    def annotate(frame, output):
        seen_while_writing.append(target.exists() or [p.name for p in tmp_path.iterdir() if p.suffix == ".mp4"])
        return output, "drawn"

    source = (Frame("clip", k, image, 10.0) for k, image in enumerate(pixels))
    count, _, _ = run_stream(source, tmp_path, lambda image: image, annotate, [], save=True, verbose=False)
    assert count == 4 and seen_while_writing[0] == []  # nothing before the first frame
    assert all(isinstance(names, list) and len(names) == 1 and names[0].startswith(".clip.") and
               names[0].endswith(".tmp.mp4") for names in seen_while_writing[1:]), seen_while_writing  # a temporary name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "predictions.json"]  # renamed, nothing left
    capture = cv2.VideoCapture(str(target))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 4
    capture.release()


# ---- learning through the engine, scored by `foveal detect val` on non-square images in COCO form ----------

def coco_stats(annotations: Path, results: list[dict]) -> np.ndarray:
    """pycocotools' 12 numbers for `results` against the COCO file `annotations`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO(str(annotations))
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return evaluation.stats


def test_learns_through_the_engine_and_val_writes_coco_results(trained_detector, tmp_path):
    best, annotations, images = trained_detector
    result = run_cli("detect", "val", f"weights={best}", f"data=coco:{annotations},{images}", "save_json=true",
                     f"project={tmp_path}", "name=val")
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((tmp_path / "detect" / "val" / "metrics.json").read_text())
    assert metrics["map50"] > 0.7  # measured 0.81, 0.94, 0.99 with seeds 0, 1, 2; an untrained model 0.00

    # the results file, read by pycocotools against the source's own JSON, scores the same
    results = json.loads((tmp_path / "detect" / "val" / "predictions.json").read_text())
    assert {r["image_id"] for r in results} <= {1000 + 7 * k for k in range(1, 17)}
    assert {r["category_id"] for r in results} <= set(WIDE_CATEGORY_IDS)
    stats = coco_stats(annotations, results)
    assert stats[0] == pytest.approx(metrics["map"], abs=1e-9) and stats[1] == pytest.approx(metrics["map50"], abs=1e-9)

    # what the margins guard against: the same model without NMS (measured 0.21-0.24 lower), and its boxes
    # left in the letterboxed frame (0.20)
    without_nms = foveal.val("detect", weights=best, data=f"coco:{annotations},{images}", iou=1.0, project=tmp_path,
                             verbose=False)
    assert without_nms.metrics["map50"] < metrics["map50"] - 0.1
    # exported to ONNX by the fixture (any batch and size: val's rectangular batches), the same numbers and boxes
    exported = foveal.val("detect", weights=best.with_suffix(".onnx"), data=f"coco:{annotations},{images}",
                          project=tmp_path, verbose=False)
    assert exported.metrics["map"] == pytest.approx(metrics["map"], abs=1e-3)
    image = next(images.iterdir())
    found = [foveal.predict("detect", weights=w, source=image)[0].predictions for w in (best, best.with_suffix(".onnx"))]
    assert [d["category_id"] for d in found[0]] == [d["category_id"] for d in found[1]] and found[0]
    np.testing.assert_allclose([d["bbox"] for d in found[1]], [d["bbox"] for d in found[0]], rtol=1e-3, atol=0.02)

    scale, pad_y = 128 / 150, 5  # 100 x 150 -> 85 x 128, padded to 96 x 128
    for r in results:
        x, y, w, h = r["bbox"]
        r["bbox"] = [x * scale, y * scale + pad_y, w * scale, h * scale]
    assert coco_stats(annotations, results)[1] < 0.5
