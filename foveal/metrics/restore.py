"""Image-restoration metrics: PSNR and SSIM per image, on torch tensors, as scikit-image computes them.

Both take pred and target (B, C, H, W) in [0, 1] (data range 1) and return one float64 value per image
(B,), on the tensors' device, so validation can score on the GPU. They score what they are given: the
caller clamps model outputs to [0, 1] (and, to match papers that score saved PNGs, rounds them to
multiples of 1/255) first. Conventions (/work/shared/METRICS.md):

  crop_border  pixels dropped from each side first; SR papers crop `scale`, denoising papers none.
  luma         score the Y channel of ITU-R BT.601 as MATLAB's rgb2ycbcr, in [16/255, 235/255], data
               range still 1 (what SR papers call "PSNR on Y"); a grey image (C = 1) is its own luma.

PSNR = 10 log10(1 / MSE), MSE over all of an image's channels and pixels together (as
skimage.metrics.peak_signal_noise_ratio); identical images have MSE 0 and PSNR inf, as in skimage.

SSIM follows Wang et al. 2004 as skimage.metrics.structural_similarity(gaussian_weights=True,
sigma=1.5, use_sample_covariance=False, data_range=1): Gaussian-weighted local means, variances and
covariance (an 11x11 window: the Gaussian truncated at 3.5 sigma, normalised), K1 0.01, K2 0.03.
skimage filters the whole image with a reflected border and then drops a 5-pixel strip on each side
of the SSIM map, so every value it averages comes from a window inside the image; an unpadded
("valid") conv2d computes exactly those values. The mean is over that map and, for C = 3, over the
channels (skimage's channel_axis averages the per-channel means, which have equal sizes).
"""

import math

import torch
import torch.nn.functional as F

from foveal.errors import FovealError

METRIC_KEYS = ("psnr", "ssim", "psnr_y", "ssim_y")  # the flat numbers RestoreScores.summary gives
SSIM_SIGMA, SSIM_TRUNCATE, SSIM_K1, SSIM_K2 = 1.5, 3.5, 0.01, 0.03
LUMA_WEIGHTS = (65.481, 128.553, 24.966)  # BT.601 Y per unit of R, G, B, on the 0-255 scale


def rgb_to_luma(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> (B, 1, H, W) BT.601 luma Y = (16 + 65.481 R + 128.553 G + 24.966 B) / 255."""
    weights = images.new_tensor(LUMA_WEIGHTS).view(1, 3, 1, 1)
    return (16 + (images * weights).sum(1, keepdim=True)) / 255


def _prepare(pred, target, crop_border: int, luma: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Both as float64 (B, C', H', W'): cropped, then reduced to luma if asked."""
    if pred.shape != target.shape or pred.dim() != 4:
        raise FovealError(f"pred and target must be (B, C, H, W) of one shape, got {tuple(pred.shape)} "
                          f"and {tuple(target.shape)}")
    if luma and pred.shape[1] not in (1, 3):
        raise FovealError(f"luma=True needs RGB or grey images (3 or 1 channels), got {pred.shape[1]}")
    height, width = pred.shape[-2:]
    if crop_border and min(height, width) <= 2 * crop_border:
        raise FovealError(f"crop_border={crop_border} leaves nothing of a {height}x{width} image")
    pair = []
    for images in (pred, target.to(pred.device)):
        images = images.double()
        if crop_border:
            images = images[..., crop_border:-crop_border, crop_border:-crop_border]
        if luma and images.shape[1] == 3:
            images = rgb_to_luma(images)
        pair.append(images)
    return pair[0], pair[1]


def psnr(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0, luma: bool = False) -> torch.Tensor:
    """(B,) float64 PSNR in dB of images in [0, 1]; inf where pred equals target."""
    pred, target = _prepare(pred, target, crop_border, luma)
    mse = (pred - target).square().flatten(1).mean(1)  # (B,)
    return 10 * torch.log10(1 / mse)  # 1 / 0 = inf, log10(inf) = inf


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> torch.Tensor:
    """(2r + 1,) float64 normalised Gaussian, r = int(truncate * sigma + 0.5) as scipy.ndimage: 11 taps at 1.5."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    window = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return window / window.sum()


def _local_mean(maps: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Gaussian-weighted mean of every window inside the maps: (B, K, H, W) -> (B, K, H - 2r, W - 2r)."""
    channels, taps = maps.shape[1], window.numel()
    kernel = window.repeat(channels, 1)  # (K, taps): the 2-D Gaussian is separable, one pass per axis
    maps = F.conv2d(maps, kernel.view(channels, 1, taps, 1), groups=channels)  # down the columns
    return F.conv2d(maps, kernel.view(channels, 1, 1, taps), groups=channels)  # along the rows


def ssim(pred: torch.Tensor, target: torch.Tensor, crop_border: int = 0, luma: bool = False) -> torch.Tensor:
    """(B,) float64 mean SSIM of images in [0, 1] (data range 1); 1 where pred equals target.

    After cropping, images must be at least 11 x 11 (the window)."""
    pred, target = _prepare(pred, target, crop_border, luma)
    window = gaussian_window().to(pred.device)
    if min(pred.shape[-2:]) < window.numel():
        raise FovealError(f"SSIM needs images of at least {window.numel()}x{window.numel()} pixels, "
                          f"got {tuple(pred.shape[-2:])}")
    channels = pred.shape[1]
    stats = _local_mean(torch.cat([pred, target, pred * pred, target * target, pred * target], 1), window)
    mean_p, mean_t, mean_pp, mean_tt, mean_pt = stats.split(channels, 1)  # each (B, C, H - 10, W - 10)
    var_p, var_t = mean_pp - mean_p ** 2, mean_tt - mean_t ** 2  # population (co)variances
    covariance = mean_pt - mean_p * mean_t
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2  # (K * data_range) ** 2 with data_range 1
    ssim_map = ((2 * mean_p * mean_t + c1) * (2 * covariance + c2)
                / ((mean_p ** 2 + mean_t ** 2 + c1) * (var_p + var_t + c2)))
    return ssim_map.flatten(1).mean(1)  # (B,)


class RestoreScores:
    """Per-image PSNR and SSIM, on all channels and on luma, over a whole split.

        scores = RestoreScores(crop_border=scale)  # 0 for denoising
        for degraded, clean in loader:
            scores.update(model(degraded).clamp(0, 1), clean)  # (B, C, H, W) each
        scores.summary()  # {"psnr": ..., "ssim": ..., "psnr_y": ..., "ssim_y": ...}, means over images
        scores.per_image  # [{"psnr": ..., ...}, ...] one dict per image, in order

    Means are over images, as papers average per-image PSNR. One identical pair makes the PSNR mean
    inf (as its own PSNR is); with no image added every mean is NaN. Grey images have psnr_y == psnr.
    """

    def __init__(self, crop_border: int = 0):
        self.crop_border = crop_border
        self.per_image: list[dict[str, float]] = []

    def reset(self) -> None:
        self.per_image = []

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        columns = {"psnr": psnr(pred, target, self.crop_border), "ssim": ssim(pred, target, self.crop_border)}
        if pred.shape[1] == 1:  # grey: its own luma
            columns["psnr_y"], columns["ssim_y"] = columns["psnr"], columns["ssim"]
        else:
            columns["psnr_y"] = psnr(pred, target, self.crop_border, luma=True)
            columns["ssim_y"] = ssim(pred, target, self.crop_border, luma=True)
        rows = zip(*(columns[key].tolist() for key in METRIC_KEYS))  # one (psnr, ssim, psnr_y, ssim_y) an image
        self.per_image += [dict(zip(METRIC_KEYS, row)) for row in rows]

    def summary(self) -> dict[str, float]:
        count = len(self.per_image)
        return {key: sum(image[key] for image in self.per_image) / count if count else math.nan
                for key in METRIC_KEYS}
