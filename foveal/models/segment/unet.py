"""U-Net (Ronneberger et al. 2015) and ResU-Net (Zhang, Liu and Wang 2018), our own semantic segmenters.

Both have the same U shape: an encoder that halves the resolution `depth` times while doubling
the channels (`width` at full resolution, width * 2**depth at the bottom), and a decoder that climbs
back, each level upsampling, concatenating the encoder's feature map of the same resolution (the long
skip connection that brings back the detail the pooling lost) and mixing the two with a block. A 1x1
conv head gives (B, num_classes, H, W) logits.

U-Net: blocks of two 3x3 conv + BN + ReLU, 2x2 max-pooling down, 2x2 transposed convs up. Two changes
from the paper: the convs use padding=1, so every block keeps its size and the output has the
input's size; the paper's unpadded convs shrink each map, so its output is smaller than its input
(388 from 572) and every skip must be cropped to fit. Padded, any H and W that are multiples of
2**depth work and no cropping is needed. And batch norm after each conv (the paper has none):
it lets the net train from scratch at larger learning rates. The paper's width is 64 (about 31M
parameters); we default to 32, a quarter of the parameters and MACs, to stay usable on a CPU.

ResU-Net: every block is a residual unit, so gradients reach the early layers through the identity
shortcuts. The units are pre-activation ones (BN, ReLU, conv twice, as in He et al. 2016 "Identity
Mappings" and in Zhang et al.), the shortcut a 1x1 conv + BN where the shape changes. Going down,
the first conv of a unit has stride 2 instead of a pooling layer; going up, bilinear interpolation
instead of a transposed conv (no weights, and no checkerboard artefacts). Because pre-activation
leaves the last sum unnormalised, a BN + ReLU comes before the 1x1 head, as He et al. do before
their classifier.
"""

import torch
from torch import nn

from ...registry import register_model


class UNet(nn.Module):
    """The U shape from its parts: encoder levels (the first at full resolution, each next one
    halving it), one upsampler and one block per decoder level (bottom-up), and a head."""

    def __init__(self, encoder: list[nn.Module], upsamplers: list[nn.Module], decoder: list[nn.Module],
                 head: nn.Module):
        super().__init__()
        self.encoder = nn.ModuleList(encoder)
        self.upsamplers = nn.ModuleList(upsamplers)
        self.decoder = nn.ModuleList(decoder)
        self.head = head
        self.stride = 2 ** (len(encoder) - 1)  # H and W must be multiples of it

    def forward(self, x):  # (B, in_channels, H, W) -> (B, num_classes, H, W)
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            raise ValueError(f"{type(self).__name__} needs H and W multiples of {self.stride}, "
                             f"got {tuple(x.shape[-2:])}")
        skips = []
        for level in self.encoder:
            x = level(x)  # (B, width * 2**i, H / 2**i, W / 2**i) at level i
            skips.append(x)
        skips.pop()  # the bottom level is x itself
        for upsample, block in zip(self.upsamplers, self.decoder):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))  # one level up, half the channels
        return self.head(x)


def _widths(width: int, depth: int) -> list[int]:
    return [width * 2 ** level for level in range(depth + 1)]


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    """Two 3x3 conv + BN + ReLU; padding=1 keeps the size (the conv bias is redundant before BN)."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


@register_model("segment", kind="semantic")
def unet(num_classes: int, width: int = 32, depth: int = 4, imgsz: int | None = None,
         in_channels: int = 3) -> nn.Module:
    """U-Net with `depth` 2x2 max-poolings and `width` channels at full resolution (the paper: 64, 4).

    `imgsz` is accepted, like every segment model does, and unused: any multiple of 2**depth works.
    `in_channels` is 3 for segmenting RGB images; the restore task's U-Net passes 1 for grey ones.
    """
    widths = _widths(width, depth)
    encoder = [_double_conv(in_channels, widths[0])]
    encoder += [nn.Sequential(nn.MaxPool2d(2), _double_conv(cin, cout)) for cin, cout in zip(widths, widths[1:])]
    up_levels = list(reversed(range(depth)))
    model = UNet(
        encoder,
        [nn.ConvTranspose2d(widths[level + 1], widths[level], 2, stride=2) for level in up_levels],
        [_double_conv(2 * widths[level], widths[level]) for level in up_levels],
        nn.Conv2d(widths[0], num_classes, 1),
    )
    for module in model.modules():
        if isinstance(module, nn.Conv2d):  # the paper's Gaussian with std sqrt(2 / fan-in)
            nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    return model


class PreActResidualUnit(nn.Module):
    """(BN, ReLU, 3x3 conv) twice, plus the input through a shortcut; the first conv may stride 2.

    `first=True` drops the leading BN + ReLU: the network's first unit sees the raw image.
    """

    def __init__(self, cin: int, cout: int, stride: int = 1, first: bool = False):
        super().__init__()
        preactivation = [] if first else [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
        self.body = nn.Sequential(
            *preactivation, nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        )
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        return self.body(x) + self.shortcut(x)


@register_model("segment", kind="semantic")
def resunet(num_classes: int, width: int = 32, depth: int = 4, imgsz: int | None = None) -> nn.Module:
    """ResU-Net with `depth` stride-2 units and `width` channels at full resolution (the paper: 64, 3).

    `imgsz` is accepted, like every segment model does, and unused: any multiple of 2**depth works.
    """
    widths = _widths(width, depth)
    encoder = [PreActResidualUnit(3, widths[0], first=True)]
    encoder += [PreActResidualUnit(cin, cout, stride=2) for cin, cout in zip(widths, widths[1:])]
    up_levels = list(reversed(range(depth)))
    return UNet(
        encoder,
        [nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False) for _ in up_levels],
        [PreActResidualUnit(widths[level + 1] + widths[level], widths[level]) for level in up_levels],
        nn.Sequential(nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True), nn.Conv2d(widths[0], num_classes, 1)),
    )
