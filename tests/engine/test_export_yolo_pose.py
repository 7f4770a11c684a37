"""yolo_*-pose exported to ONNX: with NMS inside, detections (B, max_det, 6 + 3K), the detector's rows plus each
one's K (x, y, visibility); without (nms=false), the decoded boxes, class scores and keypoints (B, A, 3K), foveal's
NMS after them. Run in the model's place (onnx_runtime.load_onnx), the file gives PyTorch's detections and
keypoints within 1e-3. The model is the stick-figure one tests/models/test_yolo_pose.py overfits (spread scores:
an untrained model ties them all at the class prior)."""

import copy

import pytest
import torch

from foveal.engine.onnx_export import export_onnx
from foveal.engine.onnx_runtime import load_onnx, read_onnx_meta
from tests.models.test_yolo_pose import IMGSZ, JOINTS, overfit_model

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SCORE_FLOOR = 0.05  # below it, near-ties that float rounding orders either way where max_det cuts them, and
# weak duplicates whose IoU with a kept box sits at NMS's threshold (one at 0.011 was kept by one run only)
META = {"task": "pose", "model": "yolo_n-pose", "model_kwargs": {"num_classes": 1, "num_keypoints": len(JOINTS),
                                                                  "imgsz": IMGSZ}, "classes": ["person"]}


@pytest.fixture(scope="module")
def trained():
    """The overfit model, fused as val, predict and export run it, and its images."""
    model, images, _ = overfit_model()
    return copy.deepcopy(model).fuse(), images


def export(model, path, **options):
    return export_onnx(model, META, path, IMGSZ, dynamic=False, **options)


def above_the_floor(scores: torch.Tensor) -> torch.Tensor:
    return (scores > SCORE_FLOOR) & ((scores - SCORE_FLOOR).abs() > 1e-3)


def assert_same_poses(found: list[dict], expected: list[dict]):
    """Detections above SCORE_FLOOR: the same boxes, scores, classes and keypoints, each PyTorch detection paired
    with its nearest ONNX one (equal scores may come in either order)."""
    assert len(found) == len(expected)
    for got, wanted in zip(found, expected):
        assert set(got) == {"boxes", "scores", "labels", "keypoints"}
        # a score within float rounding of the floor may fall either side of it in the two runs: left out of both
        got = {key: value[above_the_floor(got["scores"])] for key, value in got.items()}
        wanted = {key: value[above_the_floor(wanted["scores"])] for key, value in wanted.items()}
        assert 0 < len(got["scores"]) == len(wanted["scores"])
        distance = (got["boxes"][:, None] - wanted["boxes"][None]).abs().amax(-1) + \
            1e3 * (got["scores"][:, None] - wanted["scores"][None]).abs()
        nearest = distance.argmin(0)
        assert sorted(nearest.tolist()) == list(range(len(nearest)))
        torch.testing.assert_close(got["boxes"][nearest], wanted["boxes"], rtol=1e-3, atol=1e-3)
        torch.testing.assert_close(got["scores"][nearest], wanted["scores"], rtol=1e-3, atol=1e-5)
        assert torch.equal(got["labels"][nearest], wanted["labels"])
        assert got["keypoints"].dtype == torch.float32
        torch.testing.assert_close(got["keypoints"][nearest], wanted["keypoints"], rtol=1e-3, atol=1e-3)


def test_nms_in_the_graph_gives_rows_with_pytorchs_keypoints(trained, tmp_path):
    model, images = trained
    graph = export(model, tmp_path / "nms.onnx")
    session = ort.InferenceSession(str(graph))
    assert [output.name for output in session.get_outputs()] == ["detections"]
    (table,) = session.run(None, {"images": images[:1].numpy()})
    assert table.shape == (1, model.max_det, 6 + 3 * len(JOINTS))
    assert read_onnx_meta(graph)["onnx"]["nms"]
    exported = load_onnx(graph, read_onnx_meta(graph), torch.device("cpu"))
    with torch.inference_mode():
        assert_same_poses(exported(images), model(images))


def test_without_nms_the_graph_gives_decoded_keypoints_and_foveals_nms_follows(trained, tmp_path):
    model, images = trained
    graph = export(model, tmp_path / "raw.onnx", nms=False)
    boxes, scores, keypoints = ort.InferenceSession(str(graph)).run(None, {"images": images[:1].numpy()})
    anchors = sum((IMGSZ // s) ** 2 for s in (8, 16, 32))
    assert boxes.shape == (1, anchors, 4) and scores.shape == (1, anchors, 1)
    assert keypoints.shape == (1, anchors, 3 * len(JOINTS))
    exported = load_onnx(graph, read_onnx_meta(graph), torch.device("cpu"))
    with torch.inference_mode():
        assert_same_poses(exported(images), model(images))
