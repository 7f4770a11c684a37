"""`benchmark` mode: trained weights in PyTorch and as their ONNX export, side by side, on tiny models."""

import csv
import json

import numpy as np
import pytest

import foveal
from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats.yolo import write_yolo
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.errors import FovealError
from foveal.engine.contract import PHASES

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def read_rows(run_dir) -> list[dict]:
    with open(run_dir / "benchmark.csv", newline="") as f:
        return list(csv.DictReader(f))


def check_formats_agree(rows: list[dict], metrics: list[str]):
    """Both rows there, the export scoring as PyTorch does, and timings that add up."""
    assert [row["format"] for row in rows] == ["pytorch", "onnx"] and not rows[1]["error"], rows
    for key in metrics:
        assert float(rows[1][key]) == pytest.approx(float(rows[0][key]), abs=1e-3), key
    for row in rows:
        p50, p95, mean = (float(row[key]) for key in ("p50_ms", "p95_ms", "mean_ms"))
        assert 0 < p50 <= p95
        # infer is its three phases and little else: the split accounts for the latency
        assert sum(float(row[f"{name}_ms"]) for name in PHASES) == pytest.approx(mean, rel=0.2, abs=0.3)
        assert float(row["throughput"]) > 0 and float(row["size_mb"]) > 0
    assert float(rows[0]["speedup"]) == 1.0


def test_classify_pytorch_and_onnx_rows(tmp_path, monkeypatch):
    run = foveal.train("classify", data="digits", model="mlp", imgsz=8, epochs=1, workers=0, threads=1, amp="off",
                       project=tmp_path, name="digits", verbose=False)
    common = dict(weights=run.best, runs=3, threads=1, project=tmp_path, verbose=False)
    foveal.api.run("classify", "benchmark", **common)
    run_dir = tmp_path / "classify" / "benchmark"
    rows = read_rows(run_dir)
    check_formats_agree(rows, ["top1"])
    assert float(rows[0]["top1"]) > 0.5
    saved = json.loads((run_dir / "benchmark.json").read_text())
    assert saved["imgsz"] == 8 and [row["format"] for row in saved["rows"]] == ["pytorch", "onnx"]

    # int8=true adds the int8 export's row: a quarter of the size, about the same accuracy
    pytorch, onnx, int8 = foveal.api.run("classify", "benchmark", int8=True, **common)
    assert (onnx["format"], int8["format"]) == ("onnx", "onnx-int8") and not int8.get("error"), int8
    assert int8["size_mb"] < 0.5 * onnx["size_mb"] and int8["top1"] == pytest.approx(pytorch["top1"], abs=0.05)

    # an export that fails (mlp has no size-free graph) is a row with its error, not a crash
    failed = foveal.api.run("classify", "benchmark", dynamic=True, **common)
    assert failed[1]["format"] == "onnx" and "cannot be exported" in failed[1]["error"]
    assert "cannot be exported" in read_rows(tmp_path / "classify" / "benchmark3")[1]["error"]

    # without the ONNX packages: the PyTorch row, and a note naming what to install
    monkeypatch.setattr("foveal.engine.benchmark.importlib.util.find_spec", lambda name: None)
    alone = foveal.api.run("classify", "benchmark", **common)
    assert [row["format"] for row in alone] == ["pytorch"]
    notes = json.loads((tmp_path / "classify" / "benchmark4" / "benchmark.json").read_text())["notes"]
    assert len(notes) == 1 and "foveal[deploy]" in notes[0]

    with pytest.raises(FovealError, match="name the .safetensors"):
        foveal.api.run("classify", "benchmark", weights=run.best.with_suffix(".onnx"), verbose=False)


def test_detect_pytorch_and_onnx_rows(tmp_path):
    def scenes(count, seed):
        return [ImageAnnotations("", 64, 64, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
                for s in make_scene_set(count, 64, seed, min_objects=1, max_objects=2, min_scale=0.3)]

    # 12 steps: an untrained detector scores every anchor alike, and rounding would reorder its ties
    splits = {"train": scenes(48, 1), "val": scenes(4, 2)}
    data = write_yolo(DetectionData(list(SHAPE_CLASSES), splits), tmp_path / "yolo")
    run = foveal.train("detect", data=str(data), model="yolo_n", imgsz=64, epochs=1, batch=4, lr=0.01, warmup_epochs=0,
                       mosaic=0, workers=0, threads=2, amp="off", project=tmp_path, name="shapes", verbose=False)
    assert run.metrics["map50"] > 0  # something found, so equal metrics say something
    # one thread: under make test's second worker, a second thread's waits fall between the timed phases
    foveal.api.run("detect", "benchmark", weights=run.best, runs=3, batch=4, threads=1, project=tmp_path, verbose=False)
    check_formats_agree(read_rows(tmp_path / "detect" / "benchmark"), ["map", "map50"])
