"""The Python API's predict: paths, numpy arrays (RGB or BGR), PIL images, torch tensors and lists in; one
Results per image out; nothing written or printed unless asked; a lazy generator over a video; the task
read from the weights (also on the command line)."""

import inspect
import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import foveal
import foveal.cli
from foveal.engine.checkpoint import save_weights
from foveal.errors import FovealError
from foveal.registry import create_model
from foveal.tasks.classify.predict import ClassifyPredictor

from tests.conftest import write_colour_images


@pytest.fixture(scope="module")
def colour_weights(tmp_path_factory):
    """best.safetensors of a simple_cnn that tells red, green and blue images apart (a few seconds)."""
    root = tmp_path_factory.mktemp("colours")
    write_colour_images(root / "train", 12, size=16, seed=0)
    write_colour_images(root / "val", 4, size=16, seed=1)
    run = foveal.train("classify", data=str(root), model="simple_cnn", imgsz=16, epochs=3, batch=8, workers=0,
                       threads=1, amp="off", plots=False, verbose=False, project=str(root / "runs"))
    assert run.metrics["top1"] == 1.0  # the colour decides: swapping red and blue must change the answer
    return run.best


@pytest.fixture(scope="module")
def detector_weights(tmp_path_factory):
    """A freshly initialised yolo_n saved as foveal detect weights: at conf=0 it boxes something in any image."""
    path = tmp_path_factory.mktemp("detector") / "yolo.safetensors"
    torch.manual_seed(0)
    model = create_model("yolo_n", "detect", num_classes=2, imgsz=64)
    save_weights(path, model.state_dict(), {"task": "detect", "model": "yolo_n", "classes": ["ball", "box"],
                                            "imgsz": 64, "model_kwargs": {"num_classes": 2, "imgsz": 64}})
    return path


def red_image(seed=0, size=(20, 28)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array([220, 30, 30]) + rng.normal(0, 30, (*size, 3)), 0, 255).astype(np.uint8)


def top1(results) -> list[str]:
    return [r.names[r.probs.top1] for r in results]


def test_numpy_rgb_or_bgr_pil_tensor_and_lists_agree(colour_weights):
    rgb = red_image()
    (plain,) = foveal.predict(weights=colour_weights, source=rgb)
    assert plain.names[plain.probs.top1] == "red" and plain.predictions[0]["top"][0]["class"] == "red"
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # as cv2.imread gives it
    assert top1(foveal.predict(weights=colour_weights, source=bgr, bgr=True)) == ["red"]
    assert top1(foveal.predict(weights=colour_weights, source=bgr)) == ["blue"]  # the key is what tells them apart
    for same in (Image.fromarray(rgb), torch.from_numpy(rgb).permute(2, 0, 1).float() / 255):
        (result,) = foveal.classify.predict(weights=colour_weights, source=same)
        assert result.predictions == plain.predictions and result.orig_shape == (20, 28)
    batch = torch.from_numpy(np.stack([rgb, red_image(1)])).permute(0, 3, 1, 2) / 255.0  # (B, 3, H, W)
    listed = foveal.predict(weights=colour_weights, source=[rgb, Image.fromarray(red_image(2)), batch])
    assert [r.path for r in listed] == ["image0", "image1", "image2", "image3"]
    assert listed[2].predictions[0]["top"] == plain.predictions[0]["top"] and top1(listed) == ["red"] * 4
    (grey,) = foveal.predict(weights=colour_weights, source=rgb[:, :, 0])  # (H, W): one channel, shown as grey
    assert grey.orig_shape == (20, 28) and grey.orig_img.shape == (20, 28, 3)


def test_a_read_only_array_is_taken_without_warning_and_left_untouched(colour_weights):
    rgb = red_image()
    rgb.setflags(write=False)  # as np.asarray(PIL image) gives
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch warns of a tensor made from a read-only array
        (result,) = foveal.predict(weights=colour_weights, source=rgb)
    assert result.names[result.probs.top1] == "red" and np.array_equal(rgb, red_image())


def test_nothing_written_or_printed_unless_asked(colour_weights, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # where the default project folder, runs/, would appear
    Image.fromarray(red_image()).save(tmp_path / "red.png")
    results = foveal.predict(weights=colour_weights, source=tmp_path / "red.png")
    results += foveal.predict(weights=colour_weights, source=red_image())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["red.png"] and len(results) == 2
    assert capsys.readouterr() == ("", "")
    foveal.predict(weights=colour_weights, source=red_image(), verbose=True)
    assert "image0: red" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["red.png"]  # printing is not writing
    foveal.predict(weights=colour_weights, source=[red_image(), red_image(1)], save=True, name="shown")
    written = tmp_path / "runs" / "classify" / "shown"
    assert sorted(p.name for p in written.iterdir()) == ["image0.jpg", "image1.jpg", "predictions.csv",
                                                         "predictions.json"]
    assert len(json.loads((written / "predictions.json").read_text())) == 2


def test_verbose_prints_the_summary(colour_weights, tmp_path, capsys):
    foveal.predict(weights=colour_weights, source=[red_image(), red_image(1)], verbose=True, project=tmp_path)
    out = capsys.readouterr().out
    assert "image0: red" in out and "2 images, 2 predictions" in out and "results:" not in out
    assert not (tmp_path / "classify").exists()


def test_detector_results_boxes_plot_save_and_json(detector_weights, tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 255, (48, 80, 3), dtype=np.uint8)
    (result,) = foveal.detect.predict(weights=detector_weights, source=rgb, conf=0.0, max_det=4)
    boxes = result.boxes
    assert len(boxes) == 4 == len(result.predictions) and result.names == ["ball", "box"]
    corner = [[x, y, x + w, y + h] for x, y, w, h in (d["bbox"] for d in result.predictions)]
    np.testing.assert_allclose(boxes.xyxy, corner, atol=0.01)  # the entries predictions.json holds
    np.testing.assert_allclose(boxes.xywh[:, :2], (boxes.xyxy[:, :2] + boxes.xyxy[:, 2:]) / 2)
    assert boxes.cls.tolist() == [d["category_id"] for d in result.predictions]
    np.testing.assert_allclose(boxes.conf, [d["score"] for d in result.predictions], atol=1e-5)
    assert set(result.speed) == {"preprocess", "inference", "postprocess", "total"}
    drawn = result.plot()
    assert drawn.shape == (48, 80, 3) and drawn.dtype == np.uint8 and not np.array_equal(drawn, rgb)
    saved = result.save(tmp_path / "shown" / "boxes.png")
    assert np.array_equal(np.asarray(Image.open(saved)), drawn)  # PNG: lossless
    document = json.loads(result.to_json())
    assert document["orig_shape"] == [48, 80] and document["predictions"] == result.predictions
    with pytest.raises(FovealError, match=r"save: .*boxes\.txt: name an image file"):
        result.save(tmp_path / "boxes.txt")
    # OpenCV's BGR order with bgr=True: the same boxes as the RGB array
    (again,) = foveal.detect.predict(weights=detector_weights, source=np.ascontiguousarray(rgb[:, :, ::-1]),
                                     bgr=True, conf=0.0, max_det=4)
    np.testing.assert_array_equal(again.boxes.xyxy, boxes.xyxy)
    assert again.boxes.cls.tolist() == boxes.cls.tolist()


def write_video(path, count: int, size=(48, 64)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (size[1], size[0]))
    rng = np.random.default_rng(0)
    for _ in range(count):
        writer.write(rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    writer.release()
    return path


def test_stream_over_a_video_yields_frame_by_frame(colour_weights, tmp_path, monkeypatch):
    video = write_video(tmp_path / "clip.mp4", 5)
    calls = []
    infer = ClassifyPredictor.infer
    monkeypatch.setattr(ClassifyPredictor, "infer", lambda self, pixels: calls.append(1) or infer(self, pixels))
    results = foveal.predict(weights=colour_weights, source=video, stream=True)
    assert inspect.isgenerator(results) and calls == []  # nothing run until asked
    first = next(results)
    assert (first.path, first.frame, first.orig_shape, len(calls)) == ("clip", 0, (48, 64), 1)  # one frame at a time
    assert [r.frame for r in results] == [1, 2, 3, 4] and len(calls) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    # save=True: the command line's outputs, the annotated video written as the frames go by
    for result in foveal.predict(weights=colour_weights, source=video, stream=True, save=True, project=tmp_path):
        drawn = result.plot()  # the frame under a strip naming its top classes, enlarged to be read
        assert drawn.shape[0] > 48 and drawn.shape[1] % 64 == 0  # enlarged by whole pixels
    written = tmp_path / "classify" / "predict"
    assert len(json.loads((written / "predictions.json").read_text())) == 5
    capture = cv2.VideoCapture(str(written / "clip.mp4"))
    assert capture.get(cv2.CAP_PROP_FRAME_COUNT) == 5
    size = capture.get(cv2.CAP_PROP_FRAME_HEIGHT), capture.get(cv2.CAP_PROP_FRAME_WIDTH)
    assert size == pytest.approx(drawn.shape[:2], abs=1)  # the annotated frames (MPEG-4 keeps even sizes)
    capture.release()


@pytest.mark.parametrize("source, message", [
    (np.zeros((8, 8, 3), np.float32), "source: a numpy array of float32; expected uint8"),
    (np.zeros((3, 8, 8), np.uint8), "source: a numpy array of shape (3, 8, 8); expected (H, W, 3)"),
    (np.zeros((0, 8, 3), np.uint8), "source: an empty image of 8 x 0 pixels"),
    (torch.full((3, 8, 8), 2.0), "source: a torch.float32 tensor with values from 2 to 2; expected values in [0, 1]"),
    (torch.zeros(8, 8), "source: a tensor of shape (8, 8); expected (3, H, W) or (B, 3, H, W)"),
    ([np.zeros((8, 8, 3), np.uint8), torch.zeros(2, 3, 8, 8, dtype=torch.int32)],
     "source[1]: a tensor of torch.int32; expected floats in [0, 1]"),
    ([], "source: an empty list"),
    (42, "source: int '42' is not an image"),
])
def test_bad_arrays_are_one_line_errors(colour_weights, tmp_path, source, message):
    with pytest.raises(FovealError) as error:
        foveal.predict(weights=colour_weights, source=source, save=True, project=tmp_path)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert list(tmp_path.iterdir()) == []  # refused before any run folder


def test_the_task_comes_from_the_weights_on_the_command_line(colour_weights, tmp_path, capsys):
    image = tmp_path / "red.png"
    Image.fromarray(red_image()).save(image)
    assert foveal.cli.main(["predict", f"weights={colour_weights}", f"source={image}", f"project={tmp_path}"]) == 0
    assert "red.png: red" in capsys.readouterr().out
    written = json.loads((tmp_path / "classify" / "predict" / "predictions.json").read_text())
    assert written[0]["top"][0]["class"] == "red"  # the command line writes what it always wrote
    assert foveal.cli.main(["detect", "predict", f"weights={colour_weights}", f"source={image}"]) == 2
    assert "holds no foveal detect weights (task: classify)" in capsys.readouterr().err
    assert foveal.cli.main(["predict", f"source={image}"]) == 2
    assert "predict: name the weights (weights=...)" in capsys.readouterr().err
    assert foveal.cli.main(["train", "data=digits"]) == 2
    assert "train: name the task" in capsys.readouterr().err
    assert foveal.cli.main(["info", f"weights={colour_weights}"]) == 0
    assert "simple_cnn at 16x16, 3 classes" in capsys.readouterr().out
    assert foveal.val(weights=colour_weights, project=tmp_path, verbose=False).metrics["top1"] == 1.0
    assert foveal.cli.main(["version"]) == 0 and capsys.readouterr().out == f"foveal {foveal.__version__}\n"
