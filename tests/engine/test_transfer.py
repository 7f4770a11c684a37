"""Transfer learning: weights from a local file, the head resized, the backbone frozen or slowed."""

import pytest
import torch
import torchvision

import foveal
from foveal.engine.checkpoint import load_weights, save_weights
from foveal.engine.optim import parameter_groups
from foveal.engine.transfer import freeze, head_prefixes, load_pretrained, prefixes_outside_backbone, under_wrapper
from foveal.errors import FovealError


@pytest.mark.parametrize("name,head", [("resnet18", "fc."), ("vgg11", "classifier.6."), ("squeezenet1_1", "classifier.1."),
                                       ("vit_b_32", "heads.head."), ("simple_cnn", "11."), ("mobilenet_v3_small", "classifier.3.")])
def test_head_is_found(name, head):
    model = foveal.create_model(name, num_classes=5, imgsz=64)
    assert head_prefixes(model, 5) == [head]


def test_torchvision_pth_loads_with_a_new_head(tmp_path):
    imagenet = torchvision.models.resnet18(num_classes=1000)
    torch.save(imagenet.state_dict(), tmp_path / "resnet18.pth")
    model = foveal.create_model("resnet18", num_classes=3)
    note = load_pretrained(model, tmp_path / "resnet18.pth", "resnet18", skip_prefixes=head_prefixes(model, 3))
    assert "head re-initialised" in note and "fc" in note
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.weight.shape == (3, 512)


def test_weights_of_another_architecture_are_refused(tmp_path):
    torch.save(torchvision.models.mobilenet_v2().state_dict(), tmp_path / "mobilenet.pth")
    model = foveal.create_model("resnet18", num_classes=3)
    with pytest.raises(FovealError, match="does not fit 'resnet18': 0 of"):
        load_pretrained(model, tmp_path / "mobilenet.pth", "resnet18", head_prefixes(model, 3))
    save_weights(tmp_path / "other.safetensors", torchvision.models.resnet34().state_dict(), {"model": "resnet34"})
    with pytest.raises(FovealError, match="holds weights for 'resnet34', not 'resnet18'"):
        load_pretrained(model, tmp_path / "other.safetensors", "resnet18", head_prefixes(model, 3))


def test_a_pickled_object_is_never_unpickled(tmp_path):
    torch.save(torchvision.models.resnet18(), tmp_path / "whole_model.pt")  # a pickled nn.Module
    with pytest.raises(FovealError, match="weights-only"):
        load_weights(tmp_path / "whole_model.pt")


def test_freeze_backbone_and_first_blocks():
    model = foveal.create_model("resnet18", num_classes=4)
    frozen = freeze(model, "backbone", head_prefixes(model, 4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"] and frozen == len(list(model.parameters())) - 2
    model = foveal.create_model("resnet18", num_classes=4)
    freeze(model, "2", [])  # conv1, bn1
    assert [n for n, p in model.named_parameters() if not p.requires_grad] == ["conv1.weight", "bn1.weight", "bn1.bias"]
    with pytest.raises(FovealError, match="freeze: expected 'backbone'"):
        freeze(model, "everything", [])


def test_backbone_lr_groups():
    model = foveal.create_model("resnet18", num_classes=4)
    groups = parameter_groups(model, 1e-4, ["fc."], backbone_lr=0.1)
    head = [g for g in groups if any(p is model.fc.weight for p in g["params"])][0]
    body = [g for g in groups if any(p is model.conv1.weight for p in g["params"])][0]
    assert (head["lr_scale"], body["lr_scale"], body["weight_decay"]) == (1.0, 0.1, 1e-4)
    assert all(g["weight_decay"] == 0 for g in groups if any(p is model.bn1.weight for p in g["params"]))


def test_fine_tune_end_to_end(tmp_path, colour_folder):
    start = foveal.create_model("resnet18", num_classes=1000)
    torch.save(start.state_dict(), tmp_path / "start.pth")
    common = dict(data=colour_folder, model="resnet18", imgsz=32, batch=8, workers=0, verbose=False,
                  pretrained=tmp_path / "start.pth", project=tmp_path, lr=0.01)
    frozen = foveal.train("classify", **common, epochs=1, freeze="backbone")
    state, _ = load_weights(frozen.best)
    assert torch.equal(state["layer1.0.conv1.weight"], start.layer1[0].conv1.weight)  # frozen
    assert state["fc.weight"].shape == (3, 512)
    thawed = foveal.train("classify", **common, epochs=2, freeze="backbone", unfreeze_epoch=1, backbone_lr=0.1)
    state, _ = load_weights(thawed.run_dir / "last.safetensors")
    assert not torch.equal(state["layer1.0.conv1.weight"], start.layer1[0].conv1.weight)  # trained in epoch 2
    assert thawed.metrics["top1"] > 0.6  # 3 colours, chance 1/3


def test_keys_of_a_bare_torchvision_network_move_under_the_wrapper():
    own = {"model.backbone.w": torch.zeros(1), "model.head.w": torch.zeros(1)}
    bare = {"backbone.w": torch.ones(1), "head.w": torch.ones(1)}
    assert list(under_wrapper(bare, own)) == ["model.backbone.w", "model.head.w"]
    assert under_wrapper(own, own) is own  # already the wrapper's keys
    other = {"conv1.weight": torch.ones(1)}
    assert under_wrapper(other, own) is other  # another network's: left for load_pretrained to refuse


@pytest.mark.parametrize("task, name, other, kwargs", [("segment", "yolo_n-seg", "yolo_s-seg", {"num_classes": 3}),
                                                      ("pose", "yolo_n-pose", "yolo_s-pose",
                                                       {"num_classes": 1, "num_keypoints": 5})])
def test_yolo_seg_and_pose_start_from_the_detectors_weights(tmp_path, task, name, other, kwargs):
    """Every tensor of the same-size detector loads (the masks' or joints' branches start fresh); another
    size's detector is refused in one line."""
    detector = foveal.create_model("yolo_n", "detect", num_classes=kwargs["num_classes"])
    save_weights(tmp_path / "det.safetensors", detector.state_dict(), {"task": "detect", "model": "yolo_n"})
    model = foveal.create_model(name, task, imgsz=64, **kwargs)
    note = load_pretrained(model, tmp_path / "det.safetensors", name, prefixes_outside_backbone(model))
    assert f"{len(detector.state_dict())}/{len(model.state_dict())} tensors" in note
    mine = model.state_dict()
    assert all(torch.equal(mine[k], v) for k, v in detector.state_dict().items())
    with pytest.raises(FovealError, match="holds weights for 'yolo_n'"):
        load_pretrained(foveal.create_model(other, task, imgsz=64, **kwargs), tmp_path / "det.safetensors", other)
