"""Stacked hourglass (Newell et al., 2016): one heatmap per joint, for images that hold ONE object
(landmark data: a face, a hand, an X-ray). Registered as hourglass and hourglass_s, of kind "landmark".

    stem        7x7 conv stride 2, max-pool, two residual blocks: stride 4, `width` channels
    hourglass   recursive: a residual block keeps the current scale (the skip); the other branch pools,
                goes `depth` levels down through residual blocks and is upsampled back onto the skip
    per stack   a residual block and a 1x1 conv give features, a 1x1 conv the K heatmaps; between
                stacks both are mapped back (1x1 convs) and added to the stack's input, so the next
                hourglass refines the last one's guess; every stack's heatmaps are supervised

Training: the targets' first object is the image's landmarks (an image without one teaches nothing).
Each joint labelled (v > 0) gets a Gaussian of SIGMA heatmap pixels at its place; every stack's
heatmaps pay the squared error against them, summed over the map and averaged over the labelled
joints, in units of a Gaussian's energy (pi sigma^2): a map of zeros costs about 1. Loss terms
"heatmap1", "heatmap2", ... one per stack.

Decoding (decode_heatmaps): each map's argmax, moved a quarter pixel toward the higher of its two
neighbours in x and in y (the paper's), mapped to input pixels; the peak value is the joint's score.
It lands within a quarter heatmap pixel of a Gaussian's true peak, half a pixel on the map's border
rows and columns (no step there: the missing neighbour is taken to mirror the inner one).
Heatmap pixel (i, j) covers input pixels [4j, 4j + 4) x [4i, 4i + 4): its centre is input x = 4j + 2.

Eval: exactly one detection per image, whatever conf is (PCK and NME want a prediction for every
image): keypoints (1, K, 3) with each joint's peak clipped to [0, 1] as its score, score the mean
of those, box the bounds of the joints padded by BOX_PADDING of their extent each side (at least a
heatmap pixel), clipped to the image, label 0. iou and max_det are kept for the contract, unused.

Export: export_module decodes inside the graph (images -> keypoints (B, K, 3), any batch and size);
run_exported puts such a graph in the network's place, the detection around it staying PyTorch's.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from ...errors import FovealError
from ...ops.boxes import NMS_IOU, clip_boxes
from ...registry import register_model

STRIDE = 4  # input pixels per heatmap pixel
SIGMA = 1.5  # the Gaussian targets' standard deviation, in heatmap pixels
QUARTER = 0.25  # the decoding's step toward the higher neighbour, in heatmap pixels
BOX_PADDING = 0.1  # of the joints' extent, each side
HEAD_STD = 0.001  # the heatmap heads' initial weights


class Residual(nn.Module):
    """Pre-activation bottleneck: BN-ReLU-1x1 to half, BN-ReLU-3x3, BN-ReLU-1x1 back; a 1x1 skip when widths differ."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        mid = cout // 2
        self.body = nn.Sequential(
            nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, mid, 1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, mid, 3, padding=1, bias=False),
            nn.BatchNorm2d(mid), nn.ReLU(inplace=True), nn.Conv2d(mid, cout, 1))
        self.skip = nn.Identity() if cin == cout else nn.Conv2d(cin, cout, 1)

    def forward(self, x):
        return self.skip(x) + self.body(x)


class Hourglass(nn.Module):
    """`depth` halvings down and back up, a residual skip at every scale: (B, C, h, w) -> (B, C, h, w)."""

    def __init__(self, depth: int, width: int):
        super().__init__()
        self.skip = Residual(width, width)
        self.down = Residual(width, width)
        self.inner = Hourglass(depth - 1, width) if depth > 1 else Residual(width, width)
        self.up = Residual(width, width)

    def forward(self, x):
        low = self.up(self.inner(self.down(F.max_pool2d(x, 2, ceil_mode=True))))  # ceil: odd sides lose nothing
        return self.skip(x) + F.interpolate(low, size=x.shape[-2:], mode="nearest")


class StackedHourglass(nn.Module):
    def __init__(self, num_keypoints: int, stacks: int = 2, width: int = 128, depth: int = 4,
                 sigma: float = SIGMA, conf: float = 0.001, iou: float = NMS_IOU, max_det: int = 300):
        super().__init__()
        self.num_keypoints, self.sigma = num_keypoints, sigma
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.stem = nn.Sequential(nn.Conv2d(3, width // 2, 7, stride=2, padding=3, bias=False),
                                  nn.BatchNorm2d(width // 2), nn.ReLU(inplace=True),
                                  nn.MaxPool2d(2, ceil_mode=True), Residual(width // 2, width), Residual(width, width))
        self.hourglasses = nn.ModuleList(Hourglass(depth, width) for _ in range(stacks))
        self.features = nn.ModuleList(
            nn.Sequential(Residual(width, width), nn.Conv2d(width, width, 1, bias=False), nn.BatchNorm2d(width),
                          nn.ReLU(inplace=True)) for _ in range(stacks))
        self.heads = nn.ModuleList(nn.Conv2d(width, num_keypoints, 1) for _ in range(stacks))
        self.features_back = nn.ModuleList(nn.Conv2d(width, width, 1) for _ in range(stacks - 1))
        self.heatmaps_back = nn.ModuleList(nn.Conv2d(num_keypoints, width, 1) for _ in range(stacks - 1))
        for head in self.heads:  # maps start near 0, a first loss near 1 (PyTorch's init: about 30 at 128 px)
            nn.init.normal_(head.weight, std=HEAD_STD)
            nn.init.zeros_(head.bias)
        self.exported = None  # run_exported: images -> decoded keypoints of an exported graph

    def heatmaps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> every stack's heatmaps (B, K, H/4, W/4), the last stack's last."""
        x = self.stem(images)
        maps = []
        for i, hourglass in enumerate(self.hourglasses):
            features = self.features[i](hourglass(x))
            maps.append(self.heads[i](features))
            if i < len(self.features_back):
                x = x + self.features_back[i](features) + self.heatmaps_back[i](maps[-1])
        return maps

    def forward(self, images, targets=None):
        if self.training:
            return self.loss(self.heatmaps(images), targets)
        if self.exported is not None:
            table = self.exported(images)[0]  # the graph's outputs, a list (engine/onnx_runtime.py): keypoints
        else:  # decoded in float32 under autocast too: half precision cannot tell 200.5 px from 200 px
            table = decode_heatmaps(self.heatmaps(images)[-1].float())
        height, width = images.shape[-2:]
        return [landmark_detection(keypoints, height, width) for keypoints in table]

    def loss(self, maps: list[torch.Tensor], targets: list[dict]) -> dict:
        keypoints = first_objects(targets, self.num_keypoints, maps[0].device)
        wanted, labelled = gaussian_heatmaps(keypoints, tuple(maps[0].shape[-2:]), self.sigma)
        return {f"heatmap{i + 1}": heatmap_loss(m, wanted, labelled, self.sigma) for i, m in enumerate(maps)}

    def export_module(self) -> nn.Module:
        """What ONNX export traces: images (B, 3, H, W) -> keypoints (B, K, 3), decoding inside the graph."""
        return DecodedKeypoints(self)

    def run_exported(self, run) -> "StackedHourglass":
        """From now on, evaluate with `run` (images -> the outputs of an exported export_module: [keypoints])."""
        self.exported = run
        return self


class DecodedKeypoints(nn.Module):
    def __init__(self, model: StackedHourglass):
        super().__init__()
        self.model = model
        self.train(model.training)  # the model's mode, not a new module's training one

    def forward(self, images):
        return decode_heatmaps(self.model.heatmaps(images)[-1])


def first_objects(targets: list[dict], num_keypoints: int, device) -> torch.Tensor:
    """Each image's first object's keypoints (B, K, 3); all unlabelled for an image with none."""
    empty = torch.zeros(num_keypoints, 3, device=device)
    return torch.stack([t["keypoints"][0].to(device, torch.float32) if len(t["keypoints"]) else empty
                        for t in targets])


def gaussian_heatmaps(keypoints: torch.Tensor, size: tuple[int, int], sigma: float = SIGMA):
    """keypoints (B, K, 3) input pixels -> (B, K, h, w) Gaussians of `sigma` heatmap pixels at each
    labelled joint (zeros for the others), and which joints are labelled (B, K) bool."""
    centres = keypoints[..., :2] / STRIDE - 0.5  # heatmap pixels, pixel centres at whole numbers
    ys = torch.arange(size[0], device=keypoints.device, dtype=torch.float32)
    xs = torch.arange(size[1], device=keypoints.device, dtype=torch.float32)
    along_x = torch.exp(-(xs - centres[..., :1]).square() / (2 * sigma ** 2))  # (B, K, w)
    along_y = torch.exp(-(ys - centres[..., 1:]).square() / (2 * sigma ** 2))  # (B, K, h)
    labelled = keypoints[..., 2] > 0
    return along_y[..., :, None] * along_x[..., None, :] * labelled[..., None, None], labelled


def heatmap_loss(maps: torch.Tensor, wanted: torch.Tensor, labelled: torch.Tensor, sigma: float = SIGMA):
    """Squared error summed over each labelled joint's map, averaged over those joints, divided by a
    Gaussian's energy pi sigma^2 (a map of zeros costs about 1); 0, with a graph, when none is labelled."""
    error = (maps.float() - wanted).square().sum((-2, -1))  # (B, K)
    return (error * labelled).sum() / (labelled.sum().clamp(min=1) * math.pi * sigma ** 2)


def decode_heatmaps(maps: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) heatmaps -> (B, K, 3): x, y input pixels of each map's argmax moved QUARTER of a
    heatmap pixel toward the higher neighbour along each axis, and the peak value clipped to [0, 1]."""
    height, width = maps.shape[-2:]
    peak, index = maps.flatten(2).max(-1)
    row = index.div(width, rounding_mode="floor")
    col = index - row * width  # not remainder(): its ONNX conversion refuses a symbolic width
    # a border pixel's missing neighbour mirrors the one inside (reflection): no step, neither out nor in
    padded = F.pad(maps, (1, 1, 1, 1), mode="reflect").flatten(2)

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded.gather(-1, ((row + 1 + dy) * (width + 2) + col + 1 + dx)[..., None])[..., 0]

    x = col + QUARTER * torch.sign(at(0, 1) - at(0, -1))
    y = row + QUARTER * torch.sign(at(1, 0) - at(-1, 0))
    return torch.stack([(x + 0.5) * STRIDE, (y + 0.5) * STRIDE, peak.clamp(0, 1)], -1)


def landmark_detection(keypoints: torch.Tensor, height: int, width: int) -> dict:
    """One image's decoded keypoints (K, 3) -> its one detection (see the module's docstring)."""
    xy = torch.stack([keypoints[:, 0].clamp(0, width), keypoints[:, 1].clamp(0, height)], -1)
    low, high = xy.amin(0), xy.amax(0)
    pad = ((high - low) * BOX_PADDING).clamp(min=STRIDE)
    box = clip_boxes(torch.cat([low - pad, high + pad])[None], height, width)
    return {"boxes": box, "scores": keypoints[:, 2].mean()[None], "labels": torch.zeros(1, dtype=torch.long,
                                                                                      device=keypoints.device),
            "keypoints": torch.cat([xy, keypoints[:, 2:]], -1)[None]}


def _build(num_classes: int, num_keypoints: int, name: str, sigmas=None, **kwargs) -> StackedHourglass:
    """sigmas: the OKS sigmas the pose task gives every pose model; the heatmap loss has no use for them."""
    if num_classes != 1:
        raise FovealError(f"model: {name} finds the one object of a landmark image, of one class; this data has "
                          f"{num_classes} classes (keypointrcnn_* and yolo_*-pose detect several)")
    return StackedHourglass(num_keypoints, **kwargs)


@register_model("pose", "hourglass", kind="landmark")
def hourglass(num_classes: int = 1, num_keypoints: int = 17, imgsz: int = 256, stacks: int = 2, width: int = 128,
              depth: int = 4, **kwargs) -> StackedHourglass:
    """2 stacks of 128 channels, 4 halvings (a 256 px image: 64 px heatmaps, 4 px at the bottom).
    imgsz is accepted, as every pose model does, and unused: the network is fully convolutional."""
    return _build(num_classes, num_keypoints, "hourglass", stacks=stacks, width=width, depth=depth, **kwargs)


@register_model("pose", "hourglass_s", kind="landmark")
def hourglass_s(num_classes: int = 1, num_keypoints: int = 17, imgsz: int = 256, stacks: int = 2, width: int = 64,
                depth: int = 3, **kwargs) -> StackedHourglass:
    """hourglass at half the width and one halving less: about a quarter of its compute."""
    return _build(num_classes, num_keypoints, "hourglass_s", stacks=stacks, width=width, depth=depth, **kwargs)
