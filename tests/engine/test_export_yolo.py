"""foveal's YOLO exported to ONNX with NMS inside the graph, (B, max_det, 6) rows x1, y1, x2, y2, score,
class, or without it (nms=false: decoded boxes and class scores, foveal's NMS after them): the same
detections and the same val mAP as PyTorch. One tiny model trained in-process for a few seconds, so that
scores are spread out as a trained model's are (an untrained one ties every score at the class prior)."""

import copy
import importlib.util
import sys

import numpy as np
import pytest
import torch

import foveal
from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats.coco import write_coco
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set
from foveal.engine.checkpoint import load_trained, save_weights, trained_meta
from foveal.engine.onnx_export import export_onnx
from foveal.engine.onnx_runtime import read_onnx_meta
from foveal.errors import FovealError
from foveal.models.detect import yolo

from tests.conftest import overfit, run_cli

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

IMGSZ = 128
STEPS = 60  # confident, well-spread scores on the 8 scenes it trains on: mAP50 rises from about 0.2 at 40 steps
# (a cliff whose step moves with the CPU's float rounding) to 0.9-1.0 from 50 on
# at val's conf (0.001) the weakest detections are near-ties that float rounding orders either way where
# max_det cuts them: compared above this score, where NMS is decided by the stronger boxes alone
SCORE_FLOOR = 0.01
HAS_ONNXSLIM = importlib.util.find_spec("onnxslim") is not None


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(weights file, COCO file, image folder, the scenes as a (8, 3, 128, 128) batch) of a yolo_n trained
    STEPS steps on 8 scenes, scored on the same scenes."""
    torch.manual_seed(0)
    scenes = make_scene_set(8, IMGSZ, seed=3, min_objects=1, max_objects=3, min_scale=0.2)
    images = torch.from_numpy(np.stack([s.image for s in scenes])).permute(0, 3, 1, 2).float() / 255
    targets = [{"boxes": torch.from_numpy(s.boxes), "labels": torch.from_numpy(s.labels)} for s in scenes]
    model = yolo.yolo_n(num_classes=len(SHAPE_CLASSES))
    overfit(model, images, targets, STEPS)
    root = tmp_path_factory.mktemp("export_yolo")
    kwargs = {"num_classes": len(SHAPE_CLASSES), "imgsz": IMGSZ}
    weights = root / "best.safetensors"
    save_weights(weights, model.state_dict(), {"task": "detect", "model": "yolo_n", "model_kwargs": kwargs,
                                               "classes": list(SHAPE_CLASSES), "imgsz": IMGSZ})
    items = [ImageAnnotations("", IMGSZ, IMGSZ, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in scenes]
    write_coco(DetectionData(list(SHAPE_CLASSES), {"val": items}), root)
    return weights, root / "val.json", root / "val", images


def pytorch_model(weights, task: str = "detect"):
    """The fused eval model, as val, predict and export run it."""
    return load_trained(weights, task, torch.device("cpu"))[0].fuse()


def export(weights, name: str, task: str = "detect", imgsz: int = IMGSZ, **options):
    """export_onnx of trained `weights` (of detect, or segment's yolo-seg) as weights' sibling `name`."""
    return export_onnx(pytorch_model(weights, task), trained_meta(weights, task), weights.with_name(name), imgsz,
                       **options)


@pytest.fixture(scope="module")
def nms_graph(trained):
    """NMS inside, any batch and size (the slow export: symbolic shapes), through onnxslim where it is installed."""
    return export(trained[0], "nms.onnx", dynamic=True, simplify=HAS_ONNXSLIM)


@pytest.fixture(scope="module")
def raw_graph(trained):
    return export(trained[0], "raw.onnx", dynamic=False, nms=False)


def assert_same_detections(table: np.ndarray, expected: list[dict]):
    """Rows of a (B, max_det, 6) table against PyTorch's per-image detections: the same boxes, scores and
    classes above SCORE_FLOOR, zero rows after the last detection. Equal scores may come in either order, so
    each PyTorch detection is paired with its nearest row."""
    assert len(table) == len(expected)
    for rows, wanted in zip(table, expected):
        count = int((rows[:, 4] > 0).sum())
        assert (rows[count:] == 0).all() and (np.diff(rows[:count, 4]) <= 0).all()  # best first, then zeros
        found = rows[rows[:, 4] > SCORE_FLOOR]
        confident = wanted["scores"] > SCORE_FLOOR
        boxes, scores, labels = (wanted[key][confident].numpy() for key in ("boxes", "scores", "labels"))
        assert 0 < len(found) == len(scores)
        distance = np.abs(found[:, None, :4] - boxes[None]).max(-1) + 1e3 * np.abs(found[:, None, 4] - scores[None])
        nearest = distance.argmin(0)  # (K,) the row of each PyTorch detection
        assert sorted(nearest) == list(range(len(found)))
        np.testing.assert_allclose(found[nearest, :4], boxes, rtol=1e-3, atol=1e-3)
        np.testing.assert_allclose(found[nearest, 4], scores, rtol=1e-3, atol=1e-5)
        np.testing.assert_array_equal(found[nearest, 5], labels)


def test_nms_in_the_graph_gives_pytorchs_detections_at_any_batch_and_size(trained, nms_graph):
    weights, _, _, images = trained
    session = ort.InferenceSession(str(nms_graph))
    assert [output.name for output in session.get_outputs()] == ["detections"]
    model = pytorch_model(weights)
    wide = torch.nn.functional.interpolate(images[:3], size=(96, 160), mode="bilinear")
    for batch in (images[:1], wide):
        (table,) = session.run(None, {"images": batch.numpy()})
        assert table.shape == (len(batch), model.max_det, 6)
        with torch.inference_mode():
            assert_same_detections(table, model(batch))
    details = read_onnx_meta(nms_graph)["onnx"]
    assert details["nms"] and (details["conf"], details["iou"], details["max_det"]) == (0.001, 0.7, 300)
    assert details["opset"] == 20


def test_without_nms_the_graph_gives_boxes_and_class_scores(trained, raw_graph):
    weights, _, _, images = trained
    session = ort.InferenceSession(str(raw_graph))
    boxes, scores = session.run(None, {"images": images[:1].numpy()})
    anchors = sum((IMGSZ // s) ** 2 for s in yolo.STRIDES)
    assert boxes.shape == (1, anchors, 4) and scores.shape == (1, anchors, len(SHAPE_CLASSES))
    with torch.inference_mode():
        expected = pytorch_model(weights).export_module()(images[:1])
    np.testing.assert_allclose(boxes, expected[0].numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(scores, expected[1].numpy(), rtol=1e-3, atol=1e-5)
    assert not read_onnx_meta(raw_graph)["onnx"]["nms"]


def test_predict_conf_filters_the_rows_of_a_graph_written_at_vals(trained, nms_graph):
    weights, _, _, images = trained
    model, exported = pytorch_model(weights), load_trained(nms_graph, "detect", torch.device("cpu"))[0]
    for m in (model, exported):
        m.conf, m.max_det = 0.25, 5
    with torch.inference_mode():
        expected, found = model(images[:4]), exported(images[:4])
    for wanted, got in zip(expected, found):
        assert len(got["scores"]) == len(wanted["scores"]) <= 5 and (got["scores"] > 0.25).all()
        torch.testing.assert_close(got["boxes"], wanted["boxes"], rtol=1e-3, atol=1e-3)
        assert torch.equal(got["labels"], wanted["labels"])


def test_the_graphs_conf_is_an_input_that_predict_raises(trained, nms_graph):
    """NMS selects among the candidates at the run's conf (fed by foveal at predict's 0.25), with val's 0.001
    as the default: the same rows above 0.25 either way (a lower score never suppresses a higher one)."""
    images = trained[3][:2].numpy()
    session = ort.InferenceSession(str(nms_graph))
    assert [graph_input.name for graph_input in session.get_inputs()] == ["images"]  # nms_conf has a default
    assert [graph_input.name for graph_input in session.get_overridable_initializers()] == ["nms_conf"]
    (every,) = session.run(None, {"images": images})
    (high,) = session.run(None, {"images": images, "nms_conf": np.array(0.25, np.float32)})
    for rows, all_rows in zip(high, every):
        kept = all_rows[all_rows[:, 4] >= 0.25]
        assert len(kept) and (all_rows[:, 4] > 0.001).sum() > len(kept)  # the low conf found more
        np.testing.assert_array_equal(rows[:len(kept)], kept)
        assert not rows[len(kept):].any()
    fed = []
    model = load_trained(nms_graph, "detect", torch.device("cpu"))[0]
    session_run = model.exported.run
    model.exported.run = lambda x, **feeds: fed.append(feeds) or session_run(x, **feeds)
    model.conf = 0.25
    model(trained[3][:1])
    twin = copy.deepcopy(model)  # as predict's fused copy, at the hint's look-again conf: it feeds its own
    twin.conf = 0.001
    with torch.inference_mode():
        low = twin(trained[3][:1])[0]["scores"]
    assert fed == [{"nms_conf": 0.25}, {"nms_conf": 0.001}] and (low < 0.25).any()


def test_val_through_the_onnx_file_scores_as_pytorch(trained, nms_graph, raw_graph, tmp_path):
    weights, annotations, images, _ = trained
    data = f"coco:{annotations},{images}"
    expected = foveal.val("detect", weights=weights, data=data, project=tmp_path, verbose=False).metrics
    assert expected["map50"] > 0.3  # a model that finds things, so that the comparison means something
    for graph in (nms_graph, raw_graph):
        exported = foveal.val("detect", weights=graph, data=data, project=tmp_path, verbose=False).metrics
        assert exported["map"] == pytest.approx(expected["map"], abs=1e-3), graph.name


def test_half_needs_a_gpu(trained, tmp_path):
    with pytest.raises(FovealError, match="device=cuda") as error:
        export(trained[0], "half.onnx", dynamic=False, half=True)
    assert "\n" not in str(error.value)


def test_simplify_without_onnxslim_names_the_package(trained, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxslim", None)  # import fails as when it is not installed
    with pytest.raises(FovealError, match="pip install onnxslim") as error:
        export(trained[0], "slim.onnx", dynamic=False, simplify=True)
    assert "\n" not in str(error.value)


def test_int8_graph_keeps_the_map_and_stores_int8_weights(trained, raw_graph, tmp_path):
    import onnx

    weights, annotations, images, _ = trained
    data = f"coco:{annotations},{images}"
    copy = tmp_path / "best.safetensors"  # export writes beside the weights: not into the shared fixture's folder
    copy.write_bytes(weights.read_bytes())
    foveal.api.run("detect", "export", weights=copy, data=data, int8=True, verbose=False)
    graph = tmp_path / "best.onnx"
    assert read_onnx_meta(graph)["onnx"]["int8"] and read_onnx_meta(graph)["onnx"]["calibration_images"] == 32
    ops = [node.op_type for node in onnx.load(str(graph)).graph.node]
    assert ops.count("QuantizeLinear") > 20 and "NonMaxSuppression" in ops  # layers in int8, NMS kept
    assert graph.stat().st_size < 0.4 * raw_graph.stat().st_size  # int8 weights: a quarter of float32's
    expected = foveal.val("detect", weights=weights, data=data, project=tmp_path, verbose=False).metrics
    quantized = foveal.val("detect", weights=graph, data=data, project=tmp_path, verbose=False).metrics
    # this toy model, overfit to 8 scenes in 60 steps, has near-perfect boxes that int8 rounding moves: on a
    # 2-core AMD EPYC it kept mAP50 0.90 of 1.0 and mAP 0.72 of 0.96 (a yolo_n trained on polyps kept its mAP
    # to 0.002, README); a broken quantization scores near 0
    assert expected["map50"] > 0.9
    assert quantized["map50"] > 0.8 * expected["map50"] and quantized["map"] > 0.6 * expected["map"]


def test_int8_needs_the_data_and_is_not_half(trained, tmp_path):
    copy = tmp_path / "best.safetensors"
    copy.write_bytes(trained[0].read_bytes())
    for options, message in [(dict(half=True), "choose one"), (dict(), "data")]:
        result = run_cli("detect", "export", f"weights={copy}", "int8=true", *(f"{k}={v}" for k, v in options.items()))
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
