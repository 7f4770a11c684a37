"""What a person reads and looks at: val's per-class table, the report's plots as PNG files, predict's
wording, progress bar and hints."""

import io
import re
import sys

import numpy as np
import pytest
from PIL import Image

import foveal
from foveal.metrics.classification import per_class_scores
from foveal.report import Table, counted, text_table


def test_counted_and_text_table():
    assert (counted(1, "detection"), counted(0, "detection"), counted(2, "series", "series")) == \
        ("1 detection", "0 detections", "2 series")
    lines = text_table(Table(["class", "AP50"], [["cat", 0.5], ["horse", 0.25]])).splitlines()
    assert lines == ["class    AP50", "cat    0.5000", "horse  0.2500"]


def test_val_prints_a_row_per_class_with_the_results_numbers(digits_mlp, tmp_path, capsys):
    result = foveal.val("classify", weights=str(digits_mlp), project=str(tmp_path), workers=0, plots=False)
    out = capsys.readouterr().out
    scores = per_class_scores(result.details["confusion"])
    header = next(line for line in out.splitlines() if line.startswith("class "))
    assert header.split() == ["class", "precision", "recall", "f1", "support"]
    for k in range(10):
        row = next(line.split() for line in out.splitlines() if line.split()[:1] == [str(k)])
        assert [float(v) for v in row[1:4]] == pytest.approx(
            [scores[name][k].item() for name in ("precision", "recall", "f1")], abs=6e-5)
        assert int(row[4]) == scores["support"][k]


@pytest.mark.plots
def test_the_reports_plots_are_png_files_beside_it_unless_plots_false(digits_mlp, tmp_path):
    foveal.val("classify", weights=str(digits_mlp), project=str(tmp_path), name="drawn", workers=0, verbose=False)
    drawn = tmp_path / "classify" / "drawn"
    pngs = sorted(p.name for p in drawn.glob("*.png"))
    assert pngs == ["confusion_matrix.png", "per_class_scores.png", "validation_predictions.png"]
    assert Image.open(drawn / "confusion_matrix.png").size[0] > 100
    foveal.val("classify", weights=str(digits_mlp), project=str(tmp_path), name="bare", workers=0, verbose=False,
               plots=False)
    assert not list((tmp_path / "classify" / "bare").glob("*.png"))
    assert (tmp_path / "classify" / "bare" / "report.html").is_file()


def random_detector_predictor(**options):
    """The DetectPredictor of a random yolo_n (every anchor scores near its 1% prior: nothing at 0.25)."""
    import torch

    from foveal.engine.modes import use_inference_options
    from foveal.registry import create_model
    from foveal.tasks.detect.task import DetectConfig, DetectTask

    torch.manual_seed(0)
    meta = {"model": "yolo_n", "classes": ["a", "b", "c"], "imgsz": 64}
    task = DetectTask.trained(DetectConfig(model="yolo_n", save=False, **options), meta)
    model = create_model("yolo_n", "detect", num_classes=3, imgsz=64).eval()
    use_inference_options(task, model, "predict")
    return task.predictor(model, torch.device("cpu")), model


def scene(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (48, 64, 3), np.uint8)


def test_predict_says_one_detection_in_the_singular():
    from foveal.data.stream import Frame

    predictor, _ = random_detector_predictor(conf=0.001, max_det=1)
    _, summary = predictor.annotate(Frame("a.png", None, scene(0), None), predictor.infer(scene(0)))
    assert summary == "1 detection" and predictor.finish() == "1 detection"  # no hint
    assert predictor.nothing_found.frames == []  # nor frames kept for one


def test_predict_that_finds_nothing_names_the_best_score_it_saw():
    from foveal.data.stream import Frame

    predictor, model = random_detector_predictor()
    for k in range(2):
        _, summary = predictor.annotate(Frame(f"{k}.png", None, scene(k), None), predictor.infer(scene(k)))
        assert summary == "0 detections"
    seconds = dict(predictor.seconds)
    summary = predictor.finish()
    assert predictor.seconds == seconds and model.conf == 0.25  # the second look leaves predict's timings be
    model.conf = 0.001
    best = max(float(predictor.infer(scene(k))["scores"].max()) for k in range(2))
    assert summary == f"0 detections; the best score in the first 2 frames was {best:.3f} (below conf=0.25: " \
                      f"lower conf= to see it)"


def test_forecast_prints_its_range_and_clips_at_zero_with_nonnegative(tmp_path, capsys):
    pytest.importorskip("statsmodels")
    rng = np.random.default_rng(0)
    counts = np.where(rng.random(240) < 0.2, rng.integers(1, 9, 240), 0)  # mostly 0: sold out, sunspots
    (tmp_path / "counts.csv").write_text("count\n" + "\n".join(map(str, counts)) + "\n")
    run = foveal.train("forecast", data=str(tmp_path / "counts.csv"), model="ar", window=8, horizon=4, epochs=1,
                       season=1, workers=0, project=str(tmp_path), verbose=False, plots=False)
    common = dict(weights=str(run.best), project=str(tmp_path), save=False)
    capsys.readouterr()
    free = [row for result in foveal.predict("forecast", verbose=True, **common) for row in result.predictions]
    out = capsys.readouterr().out
    values = [row["count"] for row in free]
    assert f"4 steps from 240, count between {min(values):.4g} and {max(values):.4g}" in out
    assert re.search(r"^1 series, .*, [\d.]+ windows/s", out, re.M)  # one window read per series
    assert min(row["count_lower"] for row in free) < 0  # the clip below has something to clip
    clipped = [row for result in foveal.predict("forecast", nonnegative=True, **common) for row in result.predictions]
    for row, kept in zip(clipped, free):
        for key in ("count", "count_lower", "count_upper"):
            assert row[key] == max(kept[key], 0.0)


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("verbose", [True, False])
def test_predict_shows_a_progress_bar_over_a_folder_on_a_terminal(tmp_path, monkeypatch, capsys, verbose):
    from foveal.data.stream import frames
    from foveal.engine.stream import run_stream

    for k in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * k, np.uint8)).save(tmp_path / f"{k}.png")
    source = frames(str(tmp_path))
    assert source.total == 3
    monkeypatch.setattr(sys, "stderr", terminal := Terminal())
    count, _, _ = run_stream(source, tmp_path, lambda pixels: pixels.mean(), lambda frame, mean: (None, f"{mean:.0f}"),
                             [], False, verbose, unit="image")
    assert count == 3
    shown = terminal.getvalue()
    assert ("predict:" in shown and "/3 [" in shown and "image/s" in shown) == verbose
    assert capsys.readouterr().out.count("png: ") == (3 if verbose else 0)  # each image's line kept


def test_a_video_knows_its_length_at_its_stride(tmp_path):
    import cv2

    from foveal.data.stream import frames

    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 10, (32, 32))
    for k in range(5):
        writer.write(np.full((32, 32, 3), 50 * k, np.uint8))
    writer.release()
    source = frames(str(tmp_path / "clip.mp4"), video_stride=2)
    assert source.total == 3 == len(list(source))


def test_report_plots_are_named_after_their_sections(tmp_path):
    from foveal.report import Section, write_report

    png = b"\x89PNG fake"
    write_report(tmp_path / "report.html", "t", [Section("Confusion matrix (IoU 0.5)", [png, "text", png]),
                                                 Section("summary", [{"a": 1}])])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["confusion_matrix_iou_0_5.png",
                                                          "confusion_matrix_iou_0_5_2.png", "report.html"]
    write_report(tmp_path / "inspect" / "report.html", "t", [Section("a", [png])], plot_files=False)
    assert [p.name for p in (tmp_path / "inspect").iterdir()] == ["report.html"]


def test_labels_go_above_small_images_not_over_them():
    from foveal.report.draw import enlarged, labelled

    image = np.random.default_rng(0).integers(0, 255, (48, 64, 3), np.uint8)
    large, k = enlarged(image, 256)
    assert k == 6 and np.array_equal(large[::6, ::6], image) and enlarged(large, 256)[1] == 1
    one, two = labelled(image, ["cat 0.91"], rows=2), labelled(image, ["cat 0.91", "dog 0.05"], rows=2)
    assert one.shape == two.shape and one.shape[1] == 64 and np.array_equal(two[-48:], image)
    wide = labelled(image, ["cat 0.91"], min_width=160)
    assert wide.shape[1] == 3 * 64 and np.array_equal(wide[-3 * 48:], np.repeat(np.repeat(image, 3, 0), 3, 1))


def test_classify_predict_writes_the_top_classes_above_the_image(digits_mlp, tmp_path):
    rng = np.random.default_rng(0)
    pixels = np.repeat(np.repeat(rng.integers(0, 255, (4, 4, 3), np.uint8), 6, 0), 6, 1)  # 24 px, flat 6 px cells
    Image.fromarray(pixels).save(tmp_path / "digit.png")
    foveal.predict("classify", weights=str(digits_mlp), source=str(tmp_path / "digit.png"), save=True,
                   project=str(tmp_path), verbose=False)
    written = np.asarray(Image.open(tmp_path / "classify" / "predict" / "digit.jpg")).astype(int)
    expected = np.repeat(np.repeat(pixels, 7, 0), 7, 1)  # enlarged to 168 px
    assert written.shape[1] == 168 and written.shape[0] > 168
    assert np.abs(written[-168:] - expected).mean() < 4  # only JPEG's error: no text over the picture
    assert (written[:-168] < 100).any()  # the text is in the strip above


def test_detect_val_table_holds_each_class_ap_and_instances():
    import torch

    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
    from foveal.tasks.boxes import BoxEvaluator
    from foveal.tasks.detect.task import DetectConfig, DetectTask

    items = [ImageAnnotations("", 64, 64, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in make_scene_set(6, 64, 4, min_objects=1, max_objects=3, min_scale=0.3)]
    task = DetectTask(DetectConfig())
    task.data = DetectionData(list(SHAPE_CLASSES), {"val": items})
    evaluator = BoxEvaluator(items, task.classes)
    # the truth as detections, but the first image's missed: AP below 1 for its classes
    evaluator.detections = [{"boxes": torch.tensor(item.boxes, dtype=torch.float32),
                             "scores": torch.ones(len(item.labels)),
                             "labels": torch.tensor(item.labels)} for item in items]
    evaluator.detections[0] = None
    result = evaluator.compute()
    table = task.per_class_table(result)
    coco = result.details["coco"]
    assert table.columns == ["class", "AP50-95", "AP50", "instances"]
    assert [row[0] for row in table.rows] == list(SHAPE_CLASSES)
    for k, (name, ap, ap50, instances) in enumerate(table.rows):
        assert (ap, ap50) == (coco.per_class_ap[name], coco.per_class_ap50[name])
        assert instances == sum(int((item.labels == k).sum()) for item in items)
    assert any(0 < row[1] < 1 for row in table.rows)

