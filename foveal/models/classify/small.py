"""Small CPU-friendly classifiers of our own: an MLP baseline, a classic small CNN, a CIFAR ResNet.

All take `num_classes` and `imgsz` (the MLP and the CNN's dense layers depend on the input size)
and map (B, 3, imgsz, imgsz) images to (B, num_classes) logits.
"""

import torch.nn as nn

from ...errors import FovealError
from ...registry import register_model


@register_model("classify")
def mlp(num_classes: int, imgsz: int = 32, hidden: int = 256, dropout: float = 0.2) -> nn.Module:
    """The baseline every CNN must beat: pixels flattened into two hidden layers."""
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(3 * imgsz * imgsz, hidden * 2), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden * 2, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(hidden, num_classes),
    )


@register_model("classify")
def simple_cnn(num_classes: int, imgsz: int = 32, dropout: float = 0.3) -> nn.Module:
    """Conv 32@5x5, max-pool, Conv 64@3x3, max-pool, Dense 256, Dense classes (the course classic)."""
    if imgsz < 4:
        raise FovealError(f"imgsz: {imgsz} is too small for simple_cnn: its two 2x2 poolings need at least 4")
    side = imgsz // 4  # two 2x2 poolings; 'same' padding keeps the size through the convs
    return nn.Sequential(
        nn.Conv2d(3, 32, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(64 * side * side, 256), nn.ReLU(inplace=True), nn.Dropout(dropout),
        nn.Linear(256, num_classes),
    )


class BasicBlock(nn.Module):
    """Two 3x3 convs with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet: 3 stages of widths w, 2w, 4w with n blocks each (6n+2 layers)."""

    def __init__(self, num_classes: int, depth_per_stage: int = 3, width: int = 16):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True))
        stages, cin = [], width
        for i, cout in enumerate((width, width * 2, width * 4)):
            blocks = [BasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1)
                      for j in range(depth_per_stage)]
            stages.append(nn.Sequential(*blocks))
            cin = cout
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):  # (B, 3, H, W) -> (B, classes)
        return self.fc(self.pool(self.stages(self.stem(x))).flatten(1))


@register_model("classify")
def cifar_resnet20(num_classes: int, imgsz: int = 32) -> nn.Module:
    return CifarResNet(num_classes, depth_per_stage=3)


@register_model("classify")
def cifar_resnet56(num_classes: int, imgsz: int = 32) -> nn.Module:
    return CifarResNet(num_classes, depth_per_stage=9)
