"""Every registered segmenter: the semantic ones give logits at the input's size, the instance ones
train a step with a mask loss and return masks; representatives run for real, the rest on meta."""


import pytest
import torch
import torch.nn.functional as F

import foveal
from foveal.engine.checkpoint import load_state, load_weights, save_weights
from foveal.inspect.info import model_info, parameters_on_meta
from foveal.registry import get_model_entry

SEMANTIC = [name for name in foveal.list_models("segment") if get_model_entry(name, "segment").kind == "semantic"]
INSTANCE = [name for name in foveal.list_models("segment") if get_model_entry(name, "segment").kind == "instance"]
# One of each architecture, small enough to train a real step at 64 px.
REPRESENTATIVES = ["unet", "resunet", "deeplabv3plus_resnet18", "unet_resnet18", "fpn_resnet18",
                   "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"]


pytestmark = pytest.mark.usefixtures("no_network")  # building a model downloads nothing


def test_registry_kinds_and_families():
    entries = {name: get_model_entry(name, "segment") for name in foveal.list_models("segment")}
    assert {name: e.kind for name, e in entries.items() if e.kind == "instance"} == {
        "maskrcnn_resnet18_fpn": "instance", "maskrcnn_resnet50_fpn": "instance",
        "maskrcnn_resnet50_fpn_v2": "instance", "yolo_n-seg": "instance", "yolo_s-seg": "instance",
        "yolo_m-seg": "instance"}
    assert {e.kind for e in entries.values()} == {"semantic", "instance"}
    families = {name: e.family for name, e in entries.items()}
    assert families["unet"] == families["resunet"] == families["yolo_n-seg"] == "foveal"
    assert families["deeplabv3plus_resnet18"] == families["fpn_resnet18"] == "smp"
    assert families["fcn_resnet50"] == families["maskrcnn_resnet50_fpn"] == "torchvision"
    assert len(SEMANTIC) == 15 and get_model_entry("resnet18").kind == ""  # other tasks have no kind


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("name", SEMANTIC)
def test_every_semantic_model_gives_logits_at_the_input_size(name, num_classes):
    with parameters_on_meta():
        model = foveal.create_model(name, "segment", num_classes=num_classes, imgsz=64)
    model.to("meta").eval()
    assert model(torch.empty(2, 3, 64, 64, device="meta")).shape == (2, num_classes, 64, 64)


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_representatives_train_and_round_trip(name, tmp_path):
    torch.manual_seed(0)
    model = foveal.create_model(name, "segment", num_classes=3)
    x, y = torch.randn(2, 3, 64, 64), torch.randint(0, 3, (2, 64, 64))
    logits = model(x)
    assert logits.shape == (2, 3, 64, 64)
    F.cross_entropy(logits, y).backward()
    assert all(p.grad is not None for p in model.parameters())
    save_weights(tmp_path / "w.safetensors", model.state_dict(), {"model": name})
    again = foveal.create_model(name, "segment", num_classes=3)
    load_state(again, load_weights(tmp_path / "w.safetensors")[0])
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("name", ["unet", "resunet"])
def test_our_models_train_a_single_channel_head(name):
    model = foveal.create_model(name, "segment", num_classes=1, width=8, depth=3)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 1, 32, 32)
    F.binary_cross_entropy_with_logits(logits, torch.rand(2, 1, 32, 32).round()).backward()
    assert all(p.grad is not None for p in model.parameters())


def test_unet_refuses_sizes_its_poolings_cannot_halve():
    with pytest.raises(ValueError, match="multiples of 16"):
        foveal.create_model("unet", "segment", num_classes=2)(torch.randn(1, 3, 64, 72))


def test_unet_at_the_papers_width_has_the_papers_parameters():
    # Ronneberger et al.'s U-Net (width 64, four poolings) has about 31.0M parameters. Padding
    # changes no weight count; our batch norms add 2 per channel (~12K) and drop the conv biases
    # (~6K), so the total stays within a fraction of a percent of 31.0M.
    model = foveal.create_model("unet", "segment", num_classes=2, width=64, depth=4)
    assert 30.9e6 < sum(p.numel() for p in model.parameters()) < 31.1e6


@pytest.mark.parametrize("name", ["unet", "deeplabv3plus_resnet18"])
def test_model_info(name):
    model = foveal.create_model(name, "segment", num_classes=2)
    info = model_info(model, 64)
    assert info.total_params == sum(p.numel() for p in model.parameters())
    assert info.total_macs > 0
    assert info.rows[-1].output_shape == (1, 2, 64, 64)  # the head


def instance_targets(num_images: int = 2, size: int = 64):
    """Two objects an image: boxes (2, 4) xyxy pixels, labels in [0, 3), masks (2, size, size) uint8."""
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 30.0, 50.0, 60.0]])
    masks = torch.zeros(2, size, size, dtype=torch.uint8)
    for mask, (x1, y1, x2, y2) in zip(masks, boxes.int().tolist()):
        mask[y1:y2, x1:x2] = 1
    return [{"boxes": boxes, "labels": torch.tensor([0, 2]), "masks": masks}] * num_images


def check_instance_results(results, num_classes: int, size: int = 64):
    assert len(results) == 2
    for result in results:
        count = len(result["boxes"])
        assert result["masks"].shape == (count, size, size) and result["masks"].dtype == torch.float32
        assert result["scores"].shape == result["labels"].shape == (count,)
        if count:
            assert 0 <= result["masks"].min() and result["masks"].max() <= 1
            assert 0 <= result["labels"].min() and result["labels"].max() < num_classes


def test_maskrcnn_trains_a_step_with_a_mask_loss_and_returns_masks():
    torch.manual_seed(0)
    model = foveal.create_model("maskrcnn_resnet18_fpn", num_classes=3, imgsz=64, max_det=5)
    images = torch.rand(2, 3, 64, 64)
    losses = model.train()(images, instance_targets())
    assert {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness"} <= set(losses)
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    with torch.no_grad():
        check_instance_results(model.eval()(images), num_classes=3)


@pytest.mark.parametrize("name", [n for n in INSTANCE if n != "maskrcnn_resnet18_fpn"])
def test_every_other_instance_model_builds_and_predicts(name):
    # max_det bounds the mask head's work (Mask R-CNN: a 4-conv head on every kept box), keeping this quick
    model = foveal.create_model(name, num_classes=3, imgsz=64, max_det=3).eval()
    with torch.no_grad():
        check_instance_results(model(torch.rand(2, 3, 64, 64)), num_classes=3)
