"""ONNX export across the model zoo: what exports runs in onnxruntime as it runs in PyTorch, with foveal's
metadata in the file; what cannot export is refused in one line that names the model and the reason,
before the exporter spends any time on it. Tiny models and inputs only: the whole file is a few tens of
seconds on two cores."""

import copy
from collections import OrderedDict

import pytest
import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.anchor_utils import AnchorGenerator, DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD

import foveal.api
import foveal.cli
from foveal.engine.checkpoint import load_trained, save_weights
from foveal.engine.onnx_export import export_onnx
from foveal.engine.onnx_runtime import read_onnx_meta, session_runner
from foveal.models.detect.torchvision_zoo import TorchvisionDetector
from foveal.registry import create_model

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

CLASSES = ["a", "b", "c"]


def write_weights(folder, task: str, name: str, imgsz: int, **kwargs):
    """folder/name.safetensors: a randomly initialised model with the metadata training would write."""
    torch.manual_seed(0)
    model_kwargs = {"num_classes": len(CLASSES), "imgsz": imgsz, **kwargs}
    model = create_model(name, task, **model_kwargs)
    path = folder / f"{name}.safetensors"
    save_weights(path, model.state_dict(), {"task": task, "model": name, "model_kwargs": model_kwargs,
                                            "classes": CLASSES, "imgsz": imgsz})
    return path


def export_and_load(task: str, weights, **overrides):
    """(PyTorch model, the exported file run by onnxruntime in its place) of `weights`."""
    onnx_file = foveal.api.run(task, "export", weights=weights, verbose=False, **overrides)
    assert onnx_file == weights.with_suffix(".onnx")
    meta = read_onnx_meta(onnx_file)  # metadata_props["foveal"]
    assert meta["model"] == weights.stem and meta["onnx"]["dynamic"] == overrides.get("dynamic", False)
    cpu = torch.device("cpu")
    return load_trained(weights, task, cpu)[0], load_trained(onnx_file, task, cpu)[0]


@pytest.mark.parametrize("name, imgsz", [("simple_cnn", 32), ("squeezenet1_1", 64)])  # foveal's, torchvision's
def test_classifiers_export_with_the_same_logits(name, imgsz, tmp_path):
    model, exported = export_and_load("classify", write_weights(tmp_path, "classify", name, imgsz))
    images = torch.rand(2, 3, imgsz, imgsz)  # two images through a batch-1 graph
    with torch.no_grad():
        torch.testing.assert_close(exported(images), model(images), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("name, kwargs, dynamic", [
    ("unet", {"width": 8, "depth": 2}, False),  # foveal's own (at any batch and size: tests/tasks/segment/test_segment.py's export)
    ("unet_resnet18", {"encoder_depth": 3, "decoder_channels": (32, 16, 8)}, False),  # smp, made shallow
    ("lraspp_mobilenet_v3_large", {}, False),  # torchvision
])
def test_semantic_segmenters_export_with_the_same_labels(name, kwargs, dynamic, tmp_path):
    model, exported = export_and_load("segment", write_weights(tmp_path, "segment", name, 64, **kwargs),
                                      dynamic=dynamic)
    images = torch.rand(3, 3, 96, 64) if dynamic else torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected, got = model(images), exported(images)
    assert got.shape == expected.shape
    assert (got.argmax(1) == expected.argmax(1)).float().mean() > 0.999


class TinyBackbone(nn.Module):
    """Two 32-channel feature maps (strides 8 and 16): about the least a torchvision detector takes
    (FCOS's head normalises in 32 groups)."""

    def __init__(self, out_channels):
        super().__init__()
        self.out_channels = out_channels  # an int for RetinaNet and FCOS, one per level for SSD
        self.stride8 = nn.Sequential(nn.Conv2d(3, 32, 3, 8, 1), nn.ReLU())
        self.stride16 = nn.Sequential(nn.Conv2d(32, 32, 3, 2, 1), nn.ReLU())

    def forward(self, x):
        first = self.stride8(x)
        return OrderedDict([("0", first), ("1", self.stride16(first))])


def tiny_retinanet():
    anchors = AnchorGenerator(((16,), (32,)), ((0.5, 1.0, 2.0),) * 2)
    model = detection.RetinaNet(TinyBackbone(32), 3, min_size=64, max_size=64, anchor_generator=anchors)
    return TorchvisionDetector(model, background_label=False, name="tiny_retinanet")


def tiny_fcos():
    anchors = AnchorGenerator(((8,), (16,)), ((1.0,),) * 2)  # FCOS: one point per location
    model = detection.FCOS(TinyBackbone(32), 3, min_size=64, max_size=64, anchor_generator=anchors)
    return TorchvisionDetector(model, background_label=False, name="tiny_fcos")


def tiny_ssd():
    model = SSD(TinyBackbone([32, 32]), DefaultBoxGenerator([[2], [2]]), (48, 48), 4)  # resizes 64 -> 48
    return TorchvisionDetector(model, background_label=True, name="tiny_ssd")


def matched_share(have: dict, want: dict) -> float:
    """The share of `have`'s detections that `want` holds too (same label, box within 0.01 pixel)."""
    close = (have["boxes"][:, None] - want["boxes"][None]).abs().amax(-1) < 1e-2  # (K have, K want)
    same_label = have["labels"][:, None] == want["labels"][None]
    return (close & same_label).any(1).float().mean().item()


@pytest.mark.parametrize("build", [tiny_retinanet, tiny_fcos, tiny_ssd], ids=["retinanet", "fcos", "ssd"])
def test_one_stage_detectors_export_and_detect_as_pytorch(build, tmp_path):
    """The registered RetinaNet, FCOS and SSDs are these classes with bigger backbones (too slow to
    export here); the graph holds the dense part, torchvision's post-processing runs around it."""
    torch.manual_seed(0)
    model = build().eval()
    for module in model.modules():  # torchvision's head init scores every anchor nearly alike
        if isinstance(module, nn.Conv2d):
            module.reset_parameters()
    meta = {"task": "detect", "model": model.name, "model_kwargs": {}, "classes": CLASSES, "imgsz": 64}
    path = export_onnx(model, meta, tmp_path / "tiny.onnx", 64, dynamic=False)
    details = read_onnx_meta(path)["onnx"]
    assert details["wrapped"] and not details["dynamic"] and not details.get("nms")
    run = session_runner(path, torch.device("cpu"))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        dense = model.export_module()(images[:1])
        for have, want in zip(run(images[:1]), dense, strict=True):  # logits, deltas, anchors
            torch.testing.assert_close(have, want, rtol=1e-3, atol=1e-4)
        expected, got = model(images), copy.deepcopy(model).run_exported(run)(images)
    # the detections themselves: scores a rounding apart may swap places in NMS, so compare as sets
    for want, have in zip(expected, got, strict=True):
        assert len(have["boxes"]) == len(want["boxes"]) > 0
        assert matched_share(have, want) > 0.95


def never_export(*args, **kwargs):
    raise AssertionError("a refused model reached torch.onnx.export")


def refusal(task, weights, capsys, monkeypatch, *options) -> str:
    """The CLI's answer to exporting `weights`, which the exporter must never see: exit code 2 and
    one line (returned)."""
    monkeypatch.setattr(torch.onnx, "export", never_export)  # tens of seconds even for a failing attempt
    code = foveal.cli.main([task, "export", f"weights={weights}", *options])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 1, lines
    assert not weights.with_suffix(".onnx").exists()
    return lines[0]


@pytest.mark.parametrize("task, name", [("detect", "fasterrcnn_mobilenet_v3_large_320_fpn"),
                                        ("segment", "maskrcnn_resnet18_fpn")])
def test_two_stage_models_are_refused_before_the_exporter(task, name, tmp_path, capsys, monkeypatch):
    line = refusal(task, write_weights(tmp_path, task, name, 64), capsys, monkeypatch)
    assert f"{name} cannot be exported to ONNX" in line and "proposals left after NMS" in line


def test_torchvision_detectors_refuse_dynamic_export(tmp_path, capsys, monkeypatch):
    weights = write_weights(tmp_path, "detect", "ssdlite320_mobilenet_v3_large", 64)
    line = refusal("detect", weights, capsys, monkeypatch, "dynamic=true")
    assert "ssdlite320_mobilenet_v3_large exports at a fixed size only" in line and "batch size is fixed" in line
