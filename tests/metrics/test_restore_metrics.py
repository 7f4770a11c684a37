"""PSNR and SSIM against scikit-image on random and real photos, in RGB, grey, luma and with a cropped border."""

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from foveal.errors import FovealError
from foveal.metrics.restore import RestoreScores, psnr, rgb_to_luma, ssim


def reference_psnr(pred: np.ndarray, target: np.ndarray) -> float:
    return peak_signal_noise_ratio(target, pred, data_range=1)


def reference_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    """skimage's SSIM as Wang et al. on (H, W) or (H, W, C) float64 arrays."""
    channel_axis = -1 if pred.ndim == 3 else None
    return structural_similarity(target, pred, data_range=1, gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, channel_axis=channel_axis)


def to_arrays(images: torch.Tensor) -> list[np.ndarray]:
    """(B, C, H, W) tensor -> B float64 arrays, (H, W, C) or (H, W) for grey."""
    arrays = images.double().permute(0, 2, 3, 1).numpy()
    return [a[..., 0] if a.shape[-1] == 1 else a for a in arrays]


def luma_array(image: np.ndarray) -> np.ndarray:
    """MATLAB's rgb2ycbcr Y of an (H, W, 3) RGB array in [0, 1], written out by hand."""
    return (16 + 65.481 * image[..., 0] + 128.553 * image[..., 1] + 24.966 * image[..., 2]) / 255


def noisy_pair(clean: torch.Tensor, sigma: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(clean.shape, generator=generator, dtype=torch.float64) * sigma
    return (clean + noise).clamp(0, 1), clean


def random_pair(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    clean = torch.rand(3, channels, 29, 23, generator=torch.Generator().manual_seed(channels), dtype=torch.float64)
    return noisy_pair(clean, 0.1, seed=channels)


def photo_pair(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """astronaut (512, 512, 3) or camera (512, 512), and a noisy copy, as (1, C, H, W) in [0, 1]."""
    image = torch.from_numpy(getattr(data, name)()).double() / 255
    image = image.permute(2, 0, 1) if image.dim() == 3 else image[None]
    return noisy_pair(image[None], 15 / 255, seed=1)


PAIRS = {"random_rgb": lambda: random_pair(3), "random_grey": lambda: random_pair(1),
         "astronaut": lambda: photo_pair("astronaut"), "camera": lambda: photo_pair("camera")}


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_psnr_and_ssim_agree_with_skimage(pair, crop_border):
    pred, target = PAIRS[pair]()
    ours_psnr, ours_ssim = psnr(pred, target, crop_border), ssim(pred, target, crop_border)
    assert ours_psnr.shape == ours_ssim.shape == (len(pred),) and ours_psnr.dtype == torch.float64
    crop = slice(crop_border, -crop_border) if crop_border else slice(None)
    for i, (p, t) in enumerate(zip(to_arrays(pred), to_arrays(target))):
        p, t = p[crop, crop], t[crop, crop]
        assert ours_psnr[i].item() == pytest.approx(reference_psnr(p, t), abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(reference_ssim(p, t), abs=1e-6)


@pytest.mark.parametrize("crop_border", [0, 4])
@pytest.mark.parametrize("pair", ["random_rgb", "astronaut"])
def test_luma_scores_agree_with_skimage_on_hand_computed_y(pair, crop_border):
    pred, target = PAIRS[pair]()
    ours_psnr = psnr(pred, target, crop_border, luma=True)
    ours_ssim = ssim(pred, target, crop_border, luma=True)
    crop = slice(crop_border, -crop_border) if crop_border else slice(None)
    for i, (p, t) in enumerate(zip(to_arrays(pred), to_arrays(target))):
        p, t = luma_array(p)[crop, crop], luma_array(t)[crop, crop]
        assert ours_psnr[i].item() == pytest.approx(reference_psnr(p, t), abs=1e-4)
        assert ours_ssim[i].item() == pytest.approx(reference_ssim(p, t), abs=1e-6)


def test_luma_of_white_black_and_grey_images():
    # MATLAB's rgb2ycbcr maps black to 16 and white to 235 (of 255); a grey image is its own luma
    assert rgb_to_luma(torch.zeros(1, 3, 2, 2)).flatten().tolist() == pytest.approx([16 / 255] * 4)
    assert rgb_to_luma(torch.ones(1, 3, 2, 2)).flatten().tolist() == pytest.approx([235 / 255] * 4)
    pred, target = random_pair(1)
    assert torch.equal(psnr(pred, target, luma=True), psnr(pred, target))
    assert torch.equal(ssim(pred, target, luma=True), ssim(pred, target))


def test_float32_input_scores_as_float64():
    pred, target = PAIRS["astronaut"]()
    assert torch.allclose(psnr(pred.float(), target.float()), psnr(pred, target), atol=1e-4)
    assert torch.allclose(ssim(pred.float(), target.float()), ssim(pred, target), atol=1e-6)


def test_hand_computed_psnr():
    target = torch.full((2, 3, 16, 16), 0.5)
    pred = target + torch.tensor([0.1, 0.01]).view(2, 1, 1, 1)  # MSE 1e-2 and 1e-4
    assert psnr(pred, target).tolist() == pytest.approx([20.0, 40.0], abs=1e-4)


def test_identical_images_give_inf_psnr_and_ssim_one():
    pred, _ = random_pair(3)
    assert torch.isinf(psnr(pred, pred)).all()
    with np.errstate(divide="ignore"):  # skimage divides by the zero MSE and warns
        assert reference_psnr(to_arrays(pred)[0], to_arrays(pred)[0]) == math.inf
    assert ssim(pred, pred).tolist() == pytest.approx([1.0] * len(pred), abs=1e-12)


def test_bad_inputs_are_user_errors():
    with pytest.raises(FovealError, match="one shape"):
        psnr(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 17))
    with pytest.raises(FovealError, match="at least 11x11"):
        ssim(torch.rand(1, 1, 20, 20), torch.rand(1, 1, 20, 20), crop_border=5)
    with pytest.raises(FovealError, match="leaves nothing"):
        psnr(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8), crop_border=4)


def test_restore_scores_average_per_image_scores():
    scores = RestoreScores(crop_border=2)
    assert all(math.isnan(value) for value in scores.summary().values())
    batches = [random_pair(3), PAIRS["random_rgb"]()]
    for pred, target in batches:
        scores.update(pred, target)
    assert len(scores.per_image) == 6
    pred, target = torch.cat([b[0] for b in batches]), torch.cat([b[1] for b in batches])
    expected = {"psnr": psnr(pred, target, 2), "ssim": ssim(pred, target, 2),
                "psnr_y": psnr(pred, target, 2, luma=True), "ssim_y": ssim(pred, target, 2, luma=True)}
    assert [image["ssim_y"] for image in scores.per_image] == pytest.approx(expected["ssim_y"].tolist())
    assert scores.summary() == pytest.approx({key: value.mean().item() for key, value in expected.items()})


def test_restore_scores_on_grey_images_copy_luma():
    scores = RestoreScores()
    pred, target = random_pair(1)
    scores.update(pred, target)
    summary = scores.summary()
    assert summary["psnr_y"] == summary["psnr"] and summary["ssim_y"] == summary["ssim"]
