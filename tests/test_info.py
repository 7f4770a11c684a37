"""model_info against a hand-computed model and against torchvision's published params and GFLOPS."""

import pytest
import torch
import torchvision
from torch import nn

from foveal.errors import FovealError
from foveal.models.info import format_info, model_info, parameters_on_meta


def tiny_model(height: int, width: int) -> nn.Sequential:
    conv = nn.Conv2d(3, 8, 3, padding=1)
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(8 * height * width, 10))


def test_hand_computed_tiny_model():
    info = model_info(tiny_model(4, 5), imgsz=(4, 5))
    rows = [(r.name, r.type, r.output_shape, r.params, r.macs) for r in info.rows]
    assert rows == [
        # conv: 8*3*3*3 weights + 8 biases; each of 8*4*5 outputs needs 3*3*3 MACs
        ("0", "Conv2d", (1, 8, 4, 5), 224, 8 * 4 * 5 * 27),
        ("1", "ReLU", (1, 8, 4, 5), 0, 0),
        ("2", "Flatten", (1, 160), 0, 0),
        # linear: 160*10 weights + 10 biases; 160 MACs per output
        ("3", "Linear", (1, 10), 1610, 1600),
    ]
    assert (info.total_params, info.trainable_params, info.total_macs) == (1834, 1834, 4320 + 1600)
    assert info.input_shape == (1, 3, 4, 5)


def test_batch_scales_macs_not_params():
    info = model_info(tiny_model(4, 4), imgsz=4, batch=3)
    assert info.input_shape == (3, 3, 4, 4)
    assert info.total_macs == 3 * (8 * 4 * 4 * 27 + 128 * 10)
    assert info.total_params == 224 + 1290


def test_format_info_table_and_totals():
    info = model_info(tiny_model(4, 4), imgsz=4)
    text = format_info(info)
    assert "output shape" in text.splitlines()[0]
    assert "Conv2d" in text and "1x8x4x4" in text and "1.3K" in text
    assert text.splitlines()[-1] == "1,514 parameters (1,514 trainable), 0.000 GMACs, input (1, 3, 4, 4)"
    assert "... 2 more rows" in format_info(info, max_rows=2)


def test_model_left_unchanged():
    model = tiny_model(8, 8).train()
    model[0].weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    parameters = list(model.parameters())
    info = model_info(model, imgsz=8)
    assert info.trainable_params == info.total_params - 8 * 3 * 3 * 3
    assert model.training and list(model.parameters()) == parameters
    assert all(p.device.type == "cpu" for p in parameters)
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


class ScaledByMax(nn.Module):
    """.item() has no meta kernel, so this model forces the CPU fallback."""

    def forward(self, x):
        return x / (x.abs().max().item() + 1)


def test_falls_back_to_cpu_when_meta_cannot_run():
    with torch.device("meta"):
        model = nn.Sequential(ScaledByMax(), nn.Conv2d(3, 4, 1))
    info = model_info(model, imgsz=6)
    assert info.total_macs == 4 * 6 * 6 * 3
    assert model[1].weight.is_meta


def test_too_small_input_is_a_user_error():
    with pytest.raises(FovealError, match="model Sequential cannot run at imgsz=3: .*Kernel size"):
        model_info(nn.Sequential(nn.Conv2d(3, 8, 5)), imgsz=3)


def published_cases():
    """(model name, weights) for each torchvision classifier, once per distinct published number."""
    cases, seen = [], set()
    for name in torchvision.models.list_models(module=torchvision.models):
        for weights in torchvision.models.get_model_weights(name):
            size = weights.transforms.keywords["crop_size"]
            key = (name, size, weights.meta["num_params"], weights.meta["_ops"])
            if key not in seen:
                seen.add(key)
                cases.append(pytest.param(name, weights, id=f"{name}-{weights.name}"))
    return cases


def build_as_published(name: str, weights) -> nn.Module:
    """The model the weighted builder would return, built without weights and on meta."""
    kwargs = {"num_classes": len(weights.meta["categories"] or range(1000))}
    if name == "googlenet":  # the weighted builder drops the aux heads after loading
        kwargs.update(aux_logits=False, init_weights=False)
    if name == "inception_v3":  # ... but keeps inception_v3's, which its num_params include
        kwargs.update(init_weights=False)
    if name.startswith("vit_"):  # SWAG weights need a larger position embedding
        kwargs.update(image_size=weights.meta["min_size"][0])
    with parameters_on_meta():
        return torchvision.models.get_model(name, weights=None, **kwargs)


@pytest.mark.parametrize("name, weights", published_cases())
def test_agrees_with_torchvision_published_numbers(name, weights):
    model = build_as_published(name, weights)
    info = model_info(model, imgsz=weights.transforms.keywords["crop_size"])
    assert info.total_params == weights.meta["num_params"]
    # _ops is GMACs rounded to 3 decimals; every torchvision classifier agrees to that rounding.
    assert abs(info.total_macs / 1e9 - weights.meta["_ops"]) <= 0.0005 + 1e-9
    assert sum(row.macs for row in info.rows) == info.total_macs
    assert sum(row.params for row in info.rows) == info.total_params
