"""Detection end to end through the CLI on a small YOLO-format copy of the synthetic scenes."""

import json

import cv2
import numpy as np
import pytest

import foveal
from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats.yolo import write_yolo
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.errors import FovealError
from foveal.data.stream import stream_fps

from .conftest import run_cli


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
                     "close_mosaic=1", f"amp={request.param}", f"project={project}", "name=e2e")
    assert result.returncode == 0, result.stderr[-3000:]
    return project, result


def test_train_writes_the_run_folder(trained):
    project, result = trained
    run = project / "detect" / "e2e"
    for name in ("config.yaml", "metrics.csv", "best.safetensors", "last.safetensors", "report.html"):
        assert (run / name).is_file(), name
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert {"train_loss", "map", "map50", "map75", "map_small", "mar100", "lr"} <= set(header)
    assert "epoch 2/2" in result.stdout
    assert "there is no validation loss" in (run / "report.html").read_text()


def test_val_reproduces_the_training_metrics(trained, yolo_data):
    project, _ = trained
    best = project / "detect" / "e2e" / "best.safetensors"
    again = foveal.val("detect", weights=best, project=project, verbose=False)
    rows = (project / "detect" / "e2e" / "metrics.csv").read_text().splitlines()
    header, values = rows[0].split(","), [r.split(",") for r in rows[1:]]
    best_row = max(values, key=lambda r: float(r[header.index("map")]))
    assert again.metrics["map"] == pytest.approx(float(best_row[header.index("map")]), abs=1e-9)


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
    assert "5 images/frames" in result.stdout


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
        foveal.predict("detect", weights=best, source="99", project=tmp_path, verbose=False)
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
