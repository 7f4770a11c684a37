"""Every registered classifier: right output shape; representative ones also train a step and save/load."""

import pytest
import torch
import torchvision

import foveal
from foveal.engine.checkpoint import load_state, load_weights, save_weights
from foveal.errors import FovealError

# The smallest member of each family, run for real at a small size (the rest on the meta device).
REPRESENTATIVES = {
    "mlp": 32, "simple_cnn": 32, "cifar_resnet20": 32, "alexnet": 64, "vgg11_bn": 32, "googlenet": 64,
    "inception_v3": 80, "resnet18": 32, "resnext50_32x4d": 32, "wide_resnet50_2": 32, "densenet121": 32,
    "squeezenet1_1": 64, "shufflenet_v2_x0_5": 32, "mobilenet_v2": 32, "mobilenet_v3_small": 32,
    "mnasnet0_5": 32, "efficientnet_b0": 32, "efficientnet_v2_s": 32, "regnet_x_400mf": 32,
    "vit_b_32": 64, "swin_t": 64, "swin_v2_t": 64, "convnext_tiny": 32, "maxvit_t": 224,
}


def test_registry_has_the_zoo_and_our_models():
    names = foveal.list_models("classify")
    assert set(torchvision.models.list_models(module=torchvision.models)) <= set(names)
    assert {"mlp", "simple_cnn", "cifar_resnet20"} <= set(names)
    with pytest.raises(FovealError, match="did you mean 'resnet50'"):
        foveal.create_model("resnet5O", num_classes=3)


@pytest.mark.parametrize("name", sorted(REPRESENTATIVES))
def test_representatives_train_and_round_trip(name, tmp_path):
    imgsz = REPRESENTATIVES[name]
    torch.manual_seed(0)
    model = foveal.create_model(name, num_classes=3, imgsz=imgsz)
    x, y = torch.randn(2, 3, imgsz, imgsz), torch.tensor([0, 2])
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    save_weights(tmp_path / "w.safetensors", model.state_dict(), {"model": name})
    state, meta = load_weights(tmp_path / "w.safetensors")
    again = foveal.create_model(name, num_classes=3, imgsz=imgsz)
    load_state(again, state)
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert meta["model"] == name
