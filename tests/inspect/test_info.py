"""model_info against hand-computed models, torchvision's published params and GFLOPS, torchinfo and
ptflops; receptive fields against hand computation and the published tables; the training-memory
estimate by hand; and the CLI's table."""

import io
import math

import ptflops
import pytest
import torch
import torchinfo
import torchvision
from torch import nn
from torch.nn import functional as F

from foveal.cli import main
from foveal.errors import FovealError
from foveal.inspect.info import format_info, model_info, parameters_on_meta, training_memory


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
    assert text.splitlines()[-1] == ("1,514 parameters (1,514 trainable), 0.000 GMACs (2x = 0.000 GFLOPs), "
                                     "input (1, 3, 4, 4)")
    assert "... 2 more rows" in format_info(info, max_rows=2)


@pytest.mark.parametrize("extras", [False, True], ids=["plain", "rf-and-memory"])
def test_model_left_unchanged(extras):
    model = tiny_model(8, 8).train()
    model[0].weight.requires_grad_(False)
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    parameters = list(model.parameters())
    info = model_info(model, imgsz=8, receptive_field=extras, memory=extras)
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
    info = model_info(model, imgsz=6, receptive_field=True, memory=True)
    assert info.total_macs == 4 * 6 * 6 * 3
    assert model[1].weight.is_meta
    assert (info.rows[-1].field.size, info.rows[-1].field.jump) == ((1, 1), (1, 1))
    assert info.saved_bytes == 3 * 6 * 6 * 4  # the 1x1 conv keeps its fp32 input for its weight's gradient


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


# --- receptive field ---

def fields(info, names) -> dict:
    """{name: (rf, jump)} of those modules, square ones as plain numbers."""
    def plain(axes):
        return axes[0] if axes[0] == axes[1] else axes
    return {name: "whole" if field.whole else (plain(field.size), plain(field.jump))
            for name, field in ((name, info.fields[name]) for name in names)}


def test_receptive_field_of_a_hand_computed_net():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=2, padding=2, dilation=2),  # 1 + (3 - 1) * 2 * 1 = 5, jump 2
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=3, dilation=3),  # 5 + 2 * 3 * 2 = 17
        nn.MaxPool2d(2),  # 17 + 1 * 2 = 19, jump 4
        nn.Conv2d(4, 4, (1, 5), padding=(0, 2)),  # width only: 19 + 4 * 4 = 35
        nn.ConvTranspose2d(4, 4, 4, stride=2, padding=1),  # each output reads 2 inputs: + 1 * 4, jump 2
        nn.Upsample(scale_factor=2, mode="nearest"),  # each output copies 1 input: jump 1
        nn.Upsample(scale_factor=2, mode="bilinear"),  # reads 2 inputs: + 1 * 1, jump 1/2
        nn.AdaptiveAvgPool2d(1),  # every position: the whole input
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    info = model_info(model, imgsz=32, receptive_field=True)
    assert [(row.name, row.field.size, row.field.jump) for row in info.rows[:8]] == [
        ("0", (5, 5), (2, 2)),
        ("1", (5, 5), (2, 2)),
        ("2", (17, 17), (2, 2)),
        ("3", (19, 19), (4, 4)),
        ("4", (19, 35), (4, 4)),
        ("5", (23, 39), (2, 2)),
        ("6", (23, 39), (1, 1)),
        ("7", (24, 40), (0.5, 0.5)),
    ]
    assert all(row.field.whole for row in info.rows[8:])
    text = format_info(info, rf=True)
    assert "19x35" in text and "0.5" in text and ">=input" in text and "rf px: theoretical" in text


class Branches(nn.Module):
    """Paths that meet: a residual add, a concatenation of a 1x7 and a 7x1 branch, a squeeze-excitation
    gate; then a linear layer over channels (a 1x1 conv) and one over flattened positions."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, stride=2, padding=1)  # 3, jump 2
        self.residual = nn.Conv2d(4, 4, 5, padding=2)  # 3 + 4 * 2 = 11
        self.wide = nn.Conv2d(4, 4, (1, 7), padding=(0, 3))  # (11, 11 + 6 * 2 = 23)
        self.tall = nn.Conv2d(4, 4, (7, 1), padding=(3, 0))  # (23, 11)
        self.squeeze = nn.Conv2d(8, 8, 1)
        self.pointwise = nn.Linear(8, 8)
        self.classifier = nn.Linear(8 * 4 * 4, 2)

    def forward(self, x):
        x = self.stem(x)
        x = x + self.residual(x)  # 11: the longer path
        x = torch.cat([self.wide(x), self.tall(x)], 1)  # (23, 23): the larger, axis by axis
        x = x * torch.sigmoid(self.squeeze(x.mean((2, 3), keepdim=True)))  # the gate is not counted
        x = self.pointwise(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # channels only: still 23
        self.features = x
        return self.classifier(x.flatten(1))


class Attention(nn.Module):
    def forward(self, x):  # (N, C, H, W) -> (N, H*W, C), each token attending to all
        tokens = x.flatten(2).transpose(1, 2)
        return tokens + F.scaled_dot_product_attention(tokens, tokens, tokens)


def test_receptive_field_where_paths_meet():
    info = model_info(Branches(), imgsz=8, receptive_field=True)
    assert fields(info, ["stem", "residual", "wide", "tall", "squeeze", "pointwise", "classifier"]) == {
        "stem": (3, 2), "residual": (11, 2), "wide": ((11, 23), 2), "tall": ((23, 11), 2),
        "squeeze": "whole", "pointwise": (23, 2), "classifier": "whole"}
    # a full-size input that sees everything (attention added to a residual stream) is not a gate
    info = model_info(nn.Sequential(nn.Conv2d(3, 4, 3), Attention()), imgsz=8, receptive_field=True)
    assert fields(info, ["0", "1"]) == {"0": (3, 1), "1": "whole"}


def build(name: str, **kwargs) -> nn.Module:
    with parameters_on_meta():
        return torchvision.models.get_model(name, weights=None, **kwargs)


def resnet50_v1() -> nn.Module:
    """ResNet-50 as first published: each stage downsamples in its first 1x1 conv (torchvision's
    "v1.5" does it in the 3x3 conv after it, which sees 56 pixels less)."""
    model = build("resnet50")
    for stage in (model.layer2, model.layer3, model.layer4):
        stage[0].conv1.stride, stage[0].conv2.stride = (2, 2), (1, 1)
    return model


# TF-slim's published table (google-research/receptive_field, RECEPTIVE_FIELD_TABLE.md, from Araujo et al.,
# "Computing Receptive Fields of Convolutional Neural Networks", Distill 2019): vgg_16, alexnet_v2 (the
# geometry of torchvision's AlexNet), resnet_v1_50 block4 and inception_v3, end-point by end-point. The
# ResNet-18/50 and DenseNet-121 numbers are by hand: conv1 7/2, maxpool 11/4, then each 3x3 conv adds
# 2 * jump (each dense layer one 3x3 conv; each transition's 2x2 average pool adds 1 * jump).
STANDARD_FIELDS = [
    ("vgg16", build, {}, 224, {
        "features.0": (3, 1), "features.4": (6, 2), "features.5": (10, 2), "features.9": (16, 4),
        "features.10": (24, 4), "features.12": (32, 4), "features.16": (44, 8), "features.17": (60, 8),
        "features.19": (76, 8), "features.23": (100, 16), "features.24": (132, 16), "features.26": (164, 16),
        "features.30": (212, 32), "avgpool": (212, 32), "classifier.0": "whole"}),
    ("alexnet", build, {}, 224, {
        "features.0": (11, 4), "features.2": (19, 8), "features.3": (51, 8), "features.6": (99, 16),
        "features.8": (131, 16), "features.10": (163, 16), "features.12": (195, 32)}),
    ("resnet18", build, {}, 224, {
        "layer1": (43, 4), "layer2": (99, 8), "layer3": (211, 16), "layer4": (435, 32), "avgpool": "whole"}),
    ("resnet50", build, {}, 224, {
        "layer1": (35, 4), "layer2": (91, 8), "layer3": (267, 16), "layer4": (427, 32)}),
    ("resnet50_v1", lambda name: resnet50_v1(), {}, 224, {
        "layer1": (35, 4), "layer2": (99, 8), "layer3": (291, 16), "layer4": (483, 32)}),
    ("inception_v3", build, {"init_weights": False, "aux_logits": False}, 299, {
        "Conv2d_1a_3x3": (3, 2), "Conv2d_2b_3x3": (11, 2), "maxpool1": (15, 4), "Conv2d_4a_3x3": (23, 4),
        "maxpool2": (31, 8), "Mixed_5b": (63, 8), "Mixed_5c": (95, 8), "Mixed_5d": (127, 8),
        "Mixed_6a": (159, 16), "Mixed_6b": (351, 16), "Mixed_6c": (543, 16), "Mixed_6d": (735, 16),
        "Mixed_6e": (927, 16), "Mixed_7a": (1055, 32), "Mixed_7b": (1183, 32), "Mixed_7c": (1311, 32)}),
    ("densenet121", build, {}, 224, {"features.denseblock1": (59, 4), "features.norm5": (2071, 32)}),
]


@pytest.mark.parametrize("name, builder, kwargs, imgsz, expected", STANDARD_FIELDS,
                         ids=[case[0] for case in STANDARD_FIELDS])
def test_receptive_fields_of_standard_nets(name, builder, kwargs, imgsz, expected):
    info = model_info(builder(name, **kwargs), imgsz, receptive_field=True)
    assert fields(info, expected) == expected


# --- against torchinfo and ptflops ---

@pytest.mark.parametrize("name", ["resnet18", "vgg11", "mobilenet_v3_small", "densenet121", "efficientnet_b0",
                                  "squeezenet1_0"])
def test_params_match_torchinfo_and_macs_match_ptflops(name):
    model = build(name).eval()  # all three run on meta
    info = model_info(model, 64)
    assert info.total_params == torchinfo.summary(model, input_size=(1, 3, 64, 64), verbose=0,
                                                  device="meta").total_params
    macs, params = ptflops.get_model_complexity_info(model, (3, 64, 64), as_strings=False, backend="aten",
                                                     print_per_layer_stat=False, ost=io.StringIO())
    assert params == info.total_params
    assert abs(macs - info.total_macs) <= 0.01 * info.total_macs
    # ptflops' aten backend counts conv, linear and matmuls as we do, plus one add per output of a conv or
    # linear layer with a bias (0.0004% of ResNet-18, 0.5% of SqueezeNet, which has no BatchNorm). Its
    # default 'pytorch' backend would also count norms, activations and pooling (+0.4% to +6%).
    biased = {name for name, module in model.named_modules()
              if isinstance(module, (nn.Conv2d, nn.Linear)) and module.bias is not None}
    bias_adds = sum(math.prod(row.output_shape) for row in info.rows if row.name in biased)
    assert macs == info.total_macs + bias_adds


# --- memory ---

def test_training_memory_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
                          nn.Linear(128, 10))
    info = model_info(model, imgsz=4, batch=2, memory=True)
    weights = (8 * 3 * 3 * 3 + 128 * 10 + 10) * 4  # fp32
    assert (info.weight_bytes, info.trainable_bytes) == (weights, weights)
    # autograd keeps the conv's input (3x4x4) and the ReLU's output (8x4x4), which the linear layer reads
    # through a view of the same storage; the weights are not activations
    per_image = (3 * 4 * 4 + 8 * 4 * 4) * 4
    assert info.saved_bytes == 2 * per_image
    assert [row.output_bytes for row in info.rows] == [2 * 8 * 4 * 4 * 4] * 3 + [2 * 10 * 4]

    adam = training_memory(info, batch=32, optimizer="adam")
    assert (adam.weights, adam.gradients, adam.optimizer_state) == (weights, weights, 2 * weights)
    assert adam.activations == 32 * per_image
    assert adam.total == 4 * weights + 32 * per_image
    assert training_memory(info, 32, "adamw").optimizer_state == 2 * weights
    assert training_memory(info, 32, "sgd", momentum=0.9).optimizer_state == weights
    assert training_memory(info, 32, "sgd", momentum=0).optimizer_state == 0

    model[0].weight.requires_grad_(False)  # frozen: no gradient, no optimizer state
    frozen = training_memory(model_info(model, imgsz=4, memory=True), 32, "adam")
    assert (frozen.weights, frozen.gradients, frozen.optimizer_state) == (weights, 1290 * 4, 2 * 1290 * 4)


def test_format_info_memory_lines():
    info = model_info(tiny_model(4, 4), imgsz=4, memory=True)
    text = format_info(info, memory=True, batch=8, optimizer="sgd", momentum=0.9)
    assert "out memory" in text.splitlines()[0] and "512 B" in text
    assert "training memory, batch 8, sgd, fp32 (an estimate):" in text
    assert "sgd: 1 copy of the trainable parameters (momentum buffer)" in text
    assert "mixed precision" in text
    assert "not measured" in format_info(model_info(tiny_model(4, 4), imgsz=4), memory=True)


def test_cli_prints_receptive_field_and_memory(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["classify", "info", "model=resnet18", "imgsz=64", "rf=true", "memory=true"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[-5:] == ["rf", "px", "jump", "out", "memory"]
    last_block = next(line.split() for line in lines if " layer4.1.relu " in line)
    assert last_block[-4:] == ["435", "32", "8.0", "KiB"]  # 512x2x2 fp32
    assert any(line.startswith("11,689,512 parameters") and "GFLOPs" in line for line in lines)
    assert "training memory, batch 64, adamw, fp32 (an estimate):" in lines
    assert any(line.split()[:1] == ["activations"] and "per image x 64" in line for line in lines)
    assert any(line.split()[:1] == ["total"] for line in lines)
