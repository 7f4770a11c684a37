"""Residual denoisers at scale 1: DnCNN and the segmenters' U-Net, both learning the noise, not the image.

DnCNN (Zhang, Zuo, Chen, Meng and Zhang 2017, "Beyond a Gaussian Denoiser"): a plain stack of `depth`
3x3 convs of `width` channels, no pooling, so the output keeps the input's size: conv + ReLU, then
depth - 2 blocks of conv + BN + ReLU, then a conv back to the image's channels. Residual learning: the
stack predicts the noise v of y = x + v and the model returns y - v, which the paper finds far easier to
train (with BN) than predicting the clean image. The paper's sizes: 17 layers, 64 channels, He init,
zero padding so that every map keeps the image's size; we follow it, with one change: the last conv
starts at zero, so an untrained model returns its input (the input's PSNR, not a random image's) and
training only has to learn the noise; on a CPU budget of minutes that start is worth several dB.

The U-Net is foveal.models.segment.unet's, with an image, not class logits, as its head's output, and
the same residual: output = input + U-Net(input). It pools and upsamples, so it sees a far wider context
than DnCNN's 35 x 35 pixels for the same cost, at the price of needing H and W multiples of 2**depth.
"""

from torch import nn

from ...errors import FovealError
from ...registry import register_model
from ..segment.unet import unet as segment_unet


def require_scale_one(model: str, scale: int) -> None:
    if scale != 1:
        raise FovealError(f"{model} is a denoiser: it keeps the image size and needs scale=1, got scale={scale}")


class DnCNN(nn.Module):
    """Returns the input minus the noise its layers predict."""

    def __init__(self, layers: nn.Sequential):
        super().__init__()
        self.layers = layers

    def forward(self, x):  # (B, C, H, W) -> (B, C, H, W)
        noise = self.layers(x)
        return x - noise


@register_model("restore")
def dncnn(channels: int = 3, scale: int = 1, depth: int = 17, width: int = 64) -> nn.Module:
    """DnCNN with `depth` conv layers of `width` channels (the paper: 17, 64; 20 for blind denoising)."""
    require_scale_one("dncnn", scale)
    if depth < 2:
        raise FovealError(f"dncnn needs depth >= 2 (a first and a last conv), got depth={depth}")
    layers = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
    for _ in range(depth - 2):  # the bias is redundant before BN
        layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
    layers.append(nn.Conv2d(width, channels, 3, padding=1))
    model = DnCNN(nn.Sequential(*layers))
    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # He et al.'s init, as the paper
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    zero_last_conv(model)
    return model


def zero_last_conv(model: nn.Module) -> None:
    """Start a residual model at output = its input (or its skip): the last conv's weights and bias zero."""
    last = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))][-1]
    nn.init.zeros_(last.weight)
    if last.bias is not None:
        nn.init.zeros_(last.bias)


class ResidualRestorer(nn.Module):
    """Returns the input plus the correction its body predicts."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body

    def forward(self, x):  # (B, C, H, W) -> (B, C, H, W)
        return x + self.body(x)


@register_model("restore", name="unet")
def residual_unet(channels: int = 3, scale: int = 1, width: int = 32, depth: int = 4) -> nn.Module:
    """The segment task's U-Net (`width` channels at full resolution, `depth` poolings) as a residual
    denoiser; H and W must be multiples of 2**depth."""
    require_scale_one("unet", scale)
    model = ResidualRestorer(segment_unet(num_classes=channels, width=width, depth=depth, in_channels=channels))
    zero_last_conv(model)
    return model
