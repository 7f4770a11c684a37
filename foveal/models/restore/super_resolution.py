"""Single-image super-resolution: four classic networks, each taking the low-resolution image (B, C, H, W)
and returning (B, C, H * scale, W * scale). All keep every map's size with padded convs (the papers train
on unpadded patches and crop the targets to match; padding needs no cropping and changes no weight).

SRCNN (Dong, Loy, He and Tang 2014): bicubic upsampling, then three convs, 9x9 (64), 1x1 (32), 5x5,
read as patch extraction, non-linear mapping and reconstruction. The paper upsamples before the
network; we do it inside forward (torch's bicubic, a = -0.75, not MATLAB's a = -0.5) so that SRCNN
takes the low-resolution image like every other model here. It pays for running at the high
resolution: every conv sees scale**2 times the pixels.

FSRCNN (Dong, Loy and Tang 2016): works at the low resolution and upsamples last, with a transposed
conv. 5x5 feature extraction (d = 56), 1x1 shrinking to s = 12, m = 4 3x3 mapping layers, 1x1
expanding back to d, PReLU after each, and a 9x9 transposed conv of stride `scale` whose padding
and output padding make the output exactly scale times the input.

ESPCN (Shi et al. 2016): also at the low resolution, but upsamples with a sub-pixel conv: 5x5 (64),
3x3 (32), then 3x3 to C * scale**2 channels that PixelShuffle rearranges into a scale-times larger
image. Tanh between the convs, as in the paper, so that its published numbers stay the reference for
ours (ReLU, a common substitute, changes them a little).

EDSR baseline (Lim, Son, Kim, Nah and Lee 2017): a conv head, 16 residual blocks of conv + ReLU + conv
with residual scaling 1.0 and no BN (the paper finds that normalising the features takes away the range
flexibility SR needs), a conv, a global skip from the head, then an upsampler (conv to 4 * width
channels + PixelShuffle(2) per factor 2, or one conv + PixelShuffle(3)) and a conv back to C channels.
We leave out the paper's mean shift (subtract DIV2K's mean RGB before the head, add it back after the
tail): a constant shift is what the head's and tail's biases can learn, the DIV2K mean fits neither grey
images nor other data sets, and without it the model is the same for C = 1 and C = 3.

One change to all four (bicubic_skip=True, the default): the network learns the difference from the
bicubic enlargement, output = bicubic(x) + network(x), the global residual learning of VDSR (Kim, Lee and
Lee 2016), with its last layer started at zero. An untrained model is then bicubic, and training goes up
from there; the papers' networks must first learn to reproduce the image, which takes far more steps
than a CPU gives in minutes. bicubic_skip=False builds the papers' form.

The bicubic enlargement itself is torch's (a = -0.75, align_corners=False) written as one fixed 5x5 conv
per output phase and a PixelShuffle (BicubicUpsample): the same numbers as F.interpolate, but an exported
graph runs it as a conv. onnxruntime's bicubic Resize took 600 ms of a 1080p frame; the conv takes ~10.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FovealError
from ...registry import register_model
from .dncnn import zero_last_conv


def cubic_taps(offset: float, a: float = -0.75) -> dict[int, float]:
    """Keys' cubic convolution at `offset` (in input pixels from a pixel's centre): {input pixel: weight} for
    the four pixels around it, torch's a = -0.75."""
    def weight(distance):
        distance = abs(distance)
        if distance <= 1:
            return ((a + 2) * distance - (a + 3)) * distance * distance + 1
        return ((a * distance - 5 * a) * distance + 8 * a) * distance - 4 * a if distance < 2 else 0.0
    first = math.floor(offset) - 1
    return {first + k: weight(offset - first - k) for k in range(4)}


class BicubicUpsample(nn.Module):
    """F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False), as a conv and a PixelShuffle.

    Output pixel scale * i + p reads the input at i + (p + 0.5) / scale - 0.5, four taps within i - 2 .. i + 2:
    one 5x5 kernel per phase (p_y, p_x), the outer product of the two 1-D tap sets. Edge padding repeats the
    border as torch's clamped indices do.
    """

    def __init__(self, scale: int):
        super().__init__()
        self.scale = scale
        rows = torch.zeros(scale, 5, dtype=torch.float64)  # (phase, tap at -2 .. 2)
        for phase in range(scale):
            for position, weight in cubic_taps((phase + 0.5) / scale - 0.5).items():
                rows[phase, position + 2] = weight
        kernels = rows[:, None, :, None] * rows[None, :, None, :]  # (phase_y, phase_x, 5, 5)
        self.register_buffer("kernels", kernels.reshape(scale * scale, 1, 5, 5).float(), persistent=False)

    def sub_pixels(self, x):  # (B, C, H, W) -> (B, C * scale**2, H, W), as PixelShuffle(scale) takes them
        batch, channels, height, width = x.shape
        planes = F.pad(x.reshape(batch * channels, 1, height, width), (2, 2, 2, 2), mode="replicate")
        return F.conv2d(planes, self.kernels.to(x.dtype)).reshape(batch, -1, height, width)

    def forward(self, x):  # (B, C, H, W) -> (B, C, H * scale, W * scale)
        return F.pixel_shuffle(self.sub_pixels(x), self.scale)


class BicubicSkip(nn.Module):
    """bicubic(x) + network(x): the network adds the detail that bicubic enlargement misses."""

    def __init__(self, network: nn.Module, scale: int):
        super().__init__()
        self.network, self.scale = network, scale
        self.enlarge = BicubicUpsample(scale) if scale > 1 else nn.Identity()

    def forward(self, x):  # (B, C, H, W) -> (B, C, H * scale, W * scale)
        return self.enlarge(x) + self.network(x)


def with_skip(network: nn.Module, scale: int, bicubic_skip: bool) -> nn.Module:
    if not bicubic_skip:
        return network
    zero_last_conv(network)
    return BicubicSkip(network, scale)


def check_scale(model: str, scale: int) -> None:
    if not isinstance(scale, int) or scale < 1:
        raise FovealError(f"{model} needs an integer scale >= 1, got scale={scale!r}")


class SRCNN(nn.Module):
    """Bicubic upsampling by `scale`, then the three convs (plus the enlarged image itself with skip)."""

    def __init__(self, layers: nn.Sequential, scale: int, skip: bool = False):
        super().__init__()
        self.layers, self.scale, self.skip = layers, scale, skip
        self.enlarge = BicubicUpsample(scale) if scale > 1 else nn.Identity()

    def forward(self, x):  # (B, C, H, W) -> (B, C, H * scale, W * scale)
        x = self.enlarge(x)
        return x + self.layers(x) if self.skip else self.layers(x)


@register_model("restore")
def srcnn(channels: int = 3, scale: int = 1, width: int = 64, bicubic_skip: bool = True) -> nn.Module:
    """SRCNN 9-1-5 with `width` and `width // 2` filters (the paper: 64 and 32)."""
    check_scale("srcnn", scale)
    layers = nn.Sequential(
        nn.Conv2d(channels, width, 9, padding=4), nn.ReLU(inplace=True),
        nn.Conv2d(width, width // 2, 1), nn.ReLU(inplace=True),
        nn.Conv2d(width // 2, channels, 5, padding=2),
    )
    if bicubic_skip:  # SRCNN enlarges first: its skip is the enlarged image it works on
        zero_last_conv(layers)
    return SRCNN(layers, scale, bicubic_skip)


@register_model("restore")
def fsrcnn(channels: int = 3, scale: int = 1, width: int = 56, shrink_width: int = 12,
           mapping_layers: int = 4, bicubic_skip: bool = True) -> nn.Module:
    """FSRCNN(d=width, s=shrink_width, m=mapping_layers) (the paper: 56, 12, 4); scale at most 8."""
    check_scale("fsrcnn", scale)
    if scale > 8:
        raise FovealError(f"fsrcnn's 9x9 transposed conv upsamples at most 8 times, got scale={scale}")
    layers = [nn.Conv2d(channels, width, 5, padding=2), nn.PReLU(width),
              nn.Conv2d(width, shrink_width, 1), nn.PReLU(shrink_width)]
    for _ in range(mapping_layers):
        layers += [nn.Conv2d(shrink_width, shrink_width, 3, padding=1), nn.PReLU(shrink_width)]
    layers += [nn.Conv2d(shrink_width, width, 1), nn.PReLU(width)]
    # a transposed conv gives (H - 1) * scale - 2 * padding + 9 + output_padding rows: H * scale needs
    # 2 * padding - output_padding = 9 - scale, with output_padding 0 or 1 (it must stay below the stride)
    padding = math.ceil((9 - scale) / 2)
    layers.append(nn.ConvTranspose2d(width, channels, 9, stride=scale, padding=padding,
                                     output_padding=2 * padding - (9 - scale)))
    return with_skip(nn.Sequential(*layers), scale, bicubic_skip)


class ESPCN(nn.Module):
    """Convs to C * scale**2 sub-pixel values per input pixel (plus bicubic's own, with skip), then PixelShuffle."""

    def __init__(self, network: nn.Sequential, scale: int, skip: bool):
        super().__init__()
        self.network, self.scale = network, scale
        self.enlarge = BicubicUpsample(scale) if skip else None

    def forward(self, x):  # (B, C, H, W) -> (B, C, H * scale, W * scale)
        sub_pixels = self.network(x)  # (B, C * scale**2, H, W)
        if self.enlarge is not None:  # added before the shuffle: one PixelShuffle for both (a tenth of the time)
            sub_pixels = sub_pixels + self.enlarge.sub_pixels(x)
        return F.pixel_shuffle(sub_pixels, self.scale)


@register_model("restore")
def espcn(channels: int = 3, scale: int = 1, width: int = 64, bicubic_skip: bool = True) -> nn.Module:
    """ESPCN with `width` and `width // 2` filters (the paper: 64 and 32) and tanh activations."""
    check_scale("espcn", scale)
    network = nn.Sequential(
        nn.Conv2d(channels, width, 5, padding=2), nn.Tanh(),
        nn.Conv2d(width, width // 2, 3, padding=1), nn.Tanh(),
        nn.Conv2d(width // 2, channels * scale ** 2, 3, padding=1),
    )
    if bicubic_skip:
        zero_last_conv(network)
    return ESPCN(network, scale, bicubic_skip)


class ResidualBlock(nn.Module):
    """conv + ReLU + conv, scaled by `residual_scale`, plus the input."""

    def __init__(self, width: int, residual_scale: float = 1.0):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(width, width, 3, padding=1))
        self.residual_scale = residual_scale

    def forward(self, x):
        return x + self.residual_scale * self.body(x)


def pixel_shuffle_upsampler(width: int, scale: int) -> nn.Sequential:
    """EDSR's upsampler: conv + PixelShuffle(2) per factor 2 (x4 is two x2), or one for x3."""
    if scale == 3:
        factors = [3]
    elif scale & (scale - 1) == 0:  # a power of two, 1 included (no steps)
        factors = [2] * int(math.log2(scale))
    else:
        raise FovealError(f"edsr upsamples by 3 or a power of two (2, 4, 8), got scale={scale}")
    steps = []
    for factor in factors:
        steps += [nn.Conv2d(width, width * factor ** 2, 3, padding=1), nn.PixelShuffle(factor)]
    return nn.Sequential(*steps)


class EDSR(nn.Module):
    """head -> residual blocks + conv, plus the head's output -> upsampler -> conv."""

    def __init__(self, head: nn.Module, body: nn.Module, tail: nn.Module):
        super().__init__()
        self.head, self.body, self.tail = head, body, tail

    def forward(self, x):  # (B, C, H, W) -> (B, C, H * scale, W * scale)
        features = self.head(x)  # (B, width, H, W)
        return self.tail(features + self.body(features))


@register_model("restore")
def edsr_baseline(channels: int = 3, scale: int = 1, width: int = 64, num_blocks: int = 16,
                  residual_scale: float = 1.0, bicubic_skip: bool = True) -> nn.Module:
    """EDSR baseline: `num_blocks` residual blocks of `width` channels (the paper: 16, 64, scaling 1.0;
    the full EDSR is 32, 256, 0.1)."""
    check_scale("edsr_baseline", scale)
    body = [ResidualBlock(width, residual_scale) for _ in range(num_blocks)]
    return with_skip(EDSR(
        nn.Conv2d(channels, width, 3, padding=1),
        nn.Sequential(*body, nn.Conv2d(width, width, 3, padding=1)),
        nn.Sequential(pixel_shuffle_upsampler(width, scale), nn.Conv2d(width, channels, 3, padding=1)),
    ), scale, bicubic_skip)
