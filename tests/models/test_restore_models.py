"""Every registered restorer at a tiny size: the contract's output shape for each channel count and scale
it supports, backward, a safetensors round trip; one learning run per family; the (task, name) registry."""

import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

import foveal
from foveal.errors import FovealError
from foveal.models.restore.super_resolution import BicubicUpsample
from foveal.registry import get_model_entry

TINY = {  # small enough to run every case for real in a fraction of a second
    "dncnn": dict(depth=4, width=8),
    "unet": dict(width=8, depth=2),
    "srcnn": dict(width=8),
    "fsrcnn": dict(width=8, shrink_width=4, mapping_layers=1),
    "espcn": dict(width=8),
    "edsr_baseline": dict(width=8, num_blocks=2),
}
DENOISERS = {"dncnn", "unet"}  # scale 1 only; the rest are super-resolvers
CASES = [(name, channels, scale) for name in sorted(TINY) for channels in (1, 3)
         for scale in ([1] if name in DENOISERS else [2, 3, 4])]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_every_restore_model_is_tested():
    assert sorted(TINY) == foveal.list_models("restore")


@pytest.mark.parametrize("name, channels, scale", CASES)
def test_contract_backward_and_round_trip(name, channels, scale, tmp_path):
    torch.manual_seed(0)
    model = foveal.create_model(name, "restore", channels=channels, scale=scale, **TINY[name])
    x = torch.rand(2, channels, 16, 16)  # (B, C, H, W)
    out = model(x)
    assert out.shape == (2, channels, 16 * scale, 16 * scale) and out.dtype == torch.float32
    F.l1_loss(out, torch.rand_like(out)).backward()
    assert all(p.grad is not None for p in model.parameters())

    save_file(model.state_dict(), tmp_path / "w.safetensors")
    torch.manual_seed(1)  # different initial weights, all replaced by the loaded ones
    again = foveal.create_model(name, "restore", channels=channels, scale=scale, **TINY[name])
    again.load_state_dict(load_file(tmp_path / "w.safetensors"))
    model.eval(), again.eval()
    with torch.no_grad():
        assert torch.equal(model(x), again(x))


@pytest.mark.parametrize("name", sorted(DENOISERS))
def test_denoisers_refuse_a_scale(name):
    with pytest.raises(FovealError, match="scale=1"):
        foveal.create_model(name, "restore", scale=2)


@pytest.mark.parametrize("scale", [5, 6])
def test_edsr_upsamples_by_three_or_powers_of_two(scale):
    with pytest.raises(FovealError, match="power of two"):
        foveal.create_model("edsr_baseline", "restore", scale=scale)


@pytest.mark.parametrize("name, kwargs, params", [
    ("dncnn", dict(channels=1), 556_097),  # DnCNN-S on grey images: "about 0.55M"
    ("srcnn", dict(channels=1, scale=3), 8_129),  # 9-1-5: 8,032 weights + 97 biases
    ("edsr_baseline", dict(channels=3, scale=2), 1_369_859),  # the paper's 1.37M (x2)
])
def test_papers_sizes(name, kwargs, params):
    model = foveal.create_model(name, "restore", **kwargs)
    assert sum(p.numel() for p in model.parameters()) == params


def smooth_image(size: int, channels: int) -> torch.Tensor:
    """(1, C, size, size) in [0.1, 0.9]: a few slow sinusoids, different per channel."""
    ys, xs = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    planes = [0.5 + 0.2 * torch.sin(2 * math.pi * (1.3 + c) * xs) * torch.cos(2 * math.pi * (0.7 + c / 2) * ys)
              + 0.2 * (xs - ys) * (-1) ** c for c in range(channels)]
    return torch.stack(planes)[None]


def train_steps(model, inputs, targets, steps: int, lr: float) -> tuple[float, float]:
    """(first, last) L1 loss of `steps` Adam steps on one fixed batch."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.l1_loss(model(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_dncnn_learns_to_denoise():
    torch.manual_seed(0)
    clean = smooth_image(32, 1).repeat(4, 1, 1, 1)  # (4, 1, 32, 32)
    noisy = clean + torch.randn_like(clean) * 25 / 255
    model = foveal.create_model("dncnn", "restore", channels=1, depth=5, width=16)
    first, last = train_steps(model, noisy, clean, steps=100, lr=3e-3)
    assert last < first / 2
    assert last < F.l1_loss(noisy, clean).item() / 2  # and it does better than leaving the noise in


def test_espcn_learns_to_upsample():
    torch.manual_seed(0)
    high = smooth_image(32, 3)  # (1, 3, 32, 32)
    low = F.avg_pool2d(high, 2)  # (1, 3, 16, 16)
    model = foveal.create_model("espcn", "restore", channels=3, scale=2, width=16)
    first, last = train_steps(model, low, high, steps=100, lr=3e-3)
    assert last < first / 2


@pytest.mark.parametrize("scale", [1, 2, 3, 4, 8])
def test_bicubic_as_a_conv_equals_torchs_bicubic(scale):
    x = torch.rand(2, 3, 7, 9, dtype=torch.float64)  # odd sizes: the clamped borders on every side
    enlarged = BicubicUpsample(scale).double()(x)
    expected = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False) if scale > 1 else x
    assert enlarged.shape == expected.shape and torch.allclose(enlarged, expected, atol=1e-7)  # float32 kernels


@pytest.mark.parametrize("name", ["espcn", "fsrcnn", "srcnn", "edsr_baseline"])
def test_untrained_super_resolution_is_bicubic(name):
    x = torch.rand(1, 3, 10, 12)
    model = foveal.create_model(name, "restore", channels=3, scale=3, **TINY[name]).eval()
    with torch.no_grad():
        assert torch.allclose(model(x), F.interpolate(x, scale_factor=3, mode="bicubic", align_corners=False), atol=1e-5)


def test_unet_is_one_name_for_two_tasks():
    segmenter = foveal.create_model("unet", "segment", num_classes=2, width=8, depth=2)
    restorer = foveal.create_model("unet", task="restore", channels=3, width=8, depth=2)
    assert type(segmenter) is not type(restorer)
    x = torch.rand(1, 3, 16, 16)
    assert segmenter(x).shape == (1, 2, 16, 16) and restorer(x).shape == (1, 3, 16, 16)
    assert get_model_entry("unet", "restore").task == "restore"
    with pytest.raises(FovealError, match="restore, segment") as error:
        foveal.create_model("unet", num_classes=2)
    assert "name the task" in str(error.value)
    assert foveal.list_models().count("unet") == 1
    assert "unet" in foveal.list_models("segment") and "unet" in foveal.list_models("restore")
    assert get_model_entry("dncnn").task == "restore"  # a name one task has needs no task


def test_unknown_restore_model_suggests_one():
    with pytest.raises(FovealError, match="did you mean 'espcn'"):
        foveal.create_model("espnc", "restore")
