"""foveal's fast one-stage detector: yolo_n, yolo_s, yolo_m, built to train from scratch on a CPU.

    backbone   stride-2 stem, four stages (stride-2 3x3 conv + CSP block) down to stride 32, SPPF
    neck       FPN top-down (semantics to the fine maps), then PAN bottom-up (localisation back)
    head       per stride 8, 16, 32, decoupled: a box branch and a class branch, two 3x3 convs each

Grid: each cell of the stride-s map is one anchor point at its centre, ((i + 0.5) * s) pixels; no
anchor boxes. The box branch gives the distances from the point to the left, top, right and bottom
edges, each as a distribution over reg_max bins 0..reg_max-1 (strides) whose expectation is the
distance (DFL): a peaked distribution is a sure edge, a spread one an ambiguous edge. The class
branch gives one sigmoid per class, trained on IoU-aware targets, so it is also the quality score.

Training (yolo_loss.py): task-aligned assignment gives each ground truth the top-k anchor points
inside its box by score^alpha * IoU^beta; loss = CIoU + BCE + DFL over the sum of soft targets.
Learning from scratch is quick thanks to the initial biases: class logits at a 1% prior (no flood
of confident false positives), box distributions peaked near 2.5 strides (boxes the size objects
at each level usually have, so IoU, and with it the assignment, is informative from step one).

Inference: every (anchor, class) pair scoring above `conf` (an anchor may give two classes), the
best MAX_CANDIDATES of them, class-aware NMS at `iou`, then the top `max_det`. Inputs are (B, 3, H,
W) in [0, 1] with H, W multiples of 32, not normalised: the stem's BatchNorm absorbs scale and offset.

End to end (end2end=True, YOLOv10's consistent dual assignment): a second head of the same structure, the
one-to-one head, reads the same neck maps. Training adds its loss to the usual one: the same task-aligned
metric, but each object gets its single best anchor (topk=1), so the head learns to score one box per object
and leave its neighbours low. The usual one-to-many head (ten anchors per object) stays, for the richer
signal it gives the shared network; the one-to-one head reads the neck's maps detached, as Ultralytics'
YOLOv10 does, so that its single-positive signal does not pull the shared features around (the shared
network then trains as without end2end; letting its gradient through cost 0.10 of the one-to-one head's
mAP50-95 on shapes, 160 px, 8 epochs: 0.23 against 0.32). Eval runs the one-to-one head only, and no NMS:
the best max_det (anchor, class) pairs (top_rows) above `conf`. On short schedules that head lags the NMS
one (shapes, yolo_n, 160 px, the Makefile's DETECT_TRAIN keys: mAP50-95 0.32 against 0.40 at 8 epochs,
0.60 against 0.67 at 16) and still leaves some duplicates (a quarter of the val objects had two boxes
above 0.25 at 0.5 IoU after 16 epochs, against four in five for the one-to-many head without NMS).

Export (foveal/engine/onnx_export.py): export_module(nms=True) traces the same candidate selection (boxes
clipped, pairs below conf or outside the best MAX_CANDIDATES at score -1) in the layout of ONNX
NonMaxSuppression, which the exporter then appends with the top-max_det selection: the graph gives
(B, max_det, 6) rows x1, y1, x2, y2, score, class. Such a graph's iou and max_det are fixed when it is
written, its conf is the floor of the threshold the run feeds (nms_conf); a model running it
(run_exported(fn, nms=True)) keeps the rows above its own conf, the first max_det of them, so a graph
written at val's conf=0.001 serves predict's 0.25 as well. An end2end
model has no NMS to append (exports_nms False): its export_module() ends with top_rows' TopK, the same
(B, max_det, 6) rows, read back the same way (run_exported), with no conf inside the graph at all.
"""

import functools
import math

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torchvision.ops import batched_nms

from ...ops.boxes import NMS_IOU, clip_boxes
from ...registry import register_model
from .yolo_loss import YOLOLoss

STRIDES = (8, 16, 32)
MAX_CANDIDATES = 3000  # (anchor, class) pairs per image that reach NMS; bounds its cost at conf=0.001
INITIAL_DISTANCE = 2.5  # strides: the box size (5 x 5 strides) every anchor predicts before training
# (uniform bins instead, YOLOv8's start, cost 0.12 mAP50 after 8 epochs on the shapes scenes)
CLASS_PRIOR = 0.01  # initial probability of every class at every anchor (RetinaNet's prior)


class ConvBNAct(nn.Module):
    """Conv (no bias: BatchNorm follows) -> BatchNorm -> SiLU, 'same' padding for odd kernels."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, stride: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    """Two 3x3 convs, plus the input when `shortcut` (backbone; the neck fuses, so it has none)."""

    def __init__(self, channels: int, shortcut: bool = True):
        super().__init__()
        self.conv1 = ConvBNAct(channels, channels, 3)
        self.conv2 = ConvBNAct(channels, channels, 3)
        self.shortcut = shortcut

    def forward(self, x):
        y = self.conv2(self.conv1(x))
        return x + y if self.shortcut else y


class CSPBlock(nn.Module):
    """Cross-stage partial block in YOLOv8's C2f layout.

    A 1x1 conv makes two halves; one is left alone, the other runs through `depth` bottlenecks,
    and every intermediate result joins the concatenation before a 1x1 fuse. Only a half sees the
    3x3 convs (cheap), and each bottleneck has a short path to the output (easy gradients).
    """

    def __init__(self, cin: int, cout: int, depth: int = 1, shortcut: bool = True):
        super().__init__()
        half = cout // 2
        self.split = ConvBNAct(cin, 2 * half)
        self.blocks = nn.ModuleList(Bottleneck(half, shortcut) for _ in range(depth))
        self.fuse = ConvBNAct((2 + depth) * half, cout)

    def forward(self, x):
        parts = list(self.split(x).chunk(2, 1))  # 2 x (B, half, H, W)
        for block in self.blocks:
            parts.append(block(parts[-1]))
        return self.fuse(torch.cat(parts, 1))  # (B, (2 + depth) * half, H, W) -> (B, cout, H, W)


class SPPF(nn.Module):
    """Spatial pyramid pooling, fast: 5x5 max-pools chained three times see 5, 9 and 13 cells.

    At stride 32 that is most of a 320-pixel image, for the price of three pools and two 1x1 convs.
    """

    def __init__(self, cin: int, cout: int, kernel: int = 5):
        super().__init__()
        hidden = cin // 2
        self.reduce = ConvBNAct(cin, hidden)
        self.pool = nn.MaxPool2d(kernel, 1, kernel // 2)
        self.fuse = ConvBNAct(4 * hidden, cout)

    def forward(self, x):
        pooled = [self.reduce(x)]
        for _ in range(3):
            pooled.append(self.pool(pooled[-1]))
        return self.fuse(torch.cat(pooled, 1))  # (B, 4 * hidden, H, W) -> (B, cout, H, W)


class Backbone(nn.Module):
    """Stem (stride 2), then stages at strides 4, 8, 16, 32; returns the last three maps.

    widths: 5 channel counts (stem, stage 2..5); depths: 4 bottleneck counts (stage 2..5).
    """

    def __init__(self, widths: list[int], depths: list[int]):
        super().__init__()
        self.stem = ConvBNAct(3, widths[0], 3, 2)
        stages = []
        for cin, cout, depth in zip(widths[:-1], widths[1:], depths):
            stages.append(nn.Sequential(ConvBNAct(cin, cout, 3, 2), CSPBlock(cin=cout, cout=cout, depth=depth)))
        stages[-1].append(SPPF(widths[-1], widths[-1]))
        self.stages = nn.ModuleList(stages)
        self.out_channels = widths[2:]

    def forward(self, x):  # (B, 3, H, W) -> [(B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)]
        x = self.stages[0](self.stem(x))  # (B, c2, H/4, W/4)
        features = []
        for stage in self.stages[1:]:
            x = stage(x)
            features.append(x)
        return features


class PANNeck(nn.Module):
    """FPN top-down then PAN bottom-up over the (c3, c4, c5) maps; outputs keep those widths."""

    def __init__(self, channels: list[int], depth: int):
        super().__init__()
        c3, c4, c5 = channels
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.top_down4 = CSPBlock(c5 + c4, c4, depth, shortcut=False)
        self.top_down3 = CSPBlock(c4 + c3, c3, depth, shortcut=False)
        self.down3 = ConvBNAct(c3, c3, 3, 2)
        self.bottom_up4 = CSPBlock(c3 + c4, c4, depth, shortcut=False)
        self.down4 = ConvBNAct(c4, c4, 3, 2)
        self.bottom_up5 = CSPBlock(c4 + c5, c5, depth, shortcut=False)

    def forward(self, features):
        p3, p4, p5 = features
        t4 = self.top_down4(torch.cat([self.upsample(p5), p4], 1))  # (B, c4, H/16, W/16)
        n3 = self.top_down3(torch.cat([self.upsample(t4), p3], 1))  # (B, c3, H/8, W/8)
        n4 = self.bottom_up4(torch.cat([self.down3(n3), t4], 1))  # (B, c4, H/16, W/16)
        n5 = self.bottom_up5(torch.cat([self.down4(n4), p5], 1))  # (B, c5, H/32, W/32)
        return [n3, n4, n5]


class DecoupledHead(nn.Module):
    """Per level, a box branch -> 4 * reg_max logits and a class branch -> num_classes logits.

    Separate branches because localisation wants edge-sensitive features and classification
    translation-invariant ones (YOLOX measured faster convergence than with one shared branch).
    """

    def __init__(self, num_classes: int, channels: list[int], reg_max: int):
        super().__init__()
        box_width = max(16, channels[0] // 4, 4 * reg_max)
        cls_width = max(channels[0], min(num_classes, 100))
        self.box_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, box_width, 3), ConvBNAct(box_width, box_width, 3),
                          nn.Conv2d(box_width, 4 * reg_max, 1)) for c in channels)
        self.cls_branches = nn.ModuleList(
            nn.Sequential(ConvBNAct(c, cls_width, 3), ConvBNAct(cls_width, cls_width, 3),
                          nn.Conv2d(cls_width, num_classes, 1)) for c in channels)
        self.reg_max = reg_max
        self.reset_biases()

    @torch.no_grad()
    def reset_biases(self):
        """Class logits at the CLASS_PRIOR; distance bins geometric with mean ~INITIAL_DISTANCE.

        A geometric p(k) ~ r^k has mean r / (1 - r) = d for r = d / (1 + d); its logits are k log r.
        """
        log_ratio = math.log(INITIAL_DISTANCE / (1 + INITIAL_DISTANCE))
        for box, cls in zip(self.box_branches, self.cls_branches):
            box[-1].bias.copy_((torch.arange(self.reg_max) * log_ratio).repeat(4))
            cls[-1].bias.fill_(-math.log((1 - CLASS_PRIOR) / CLASS_PRIOR))

    def forward(self, features):  # each (B, c_i, h_i, w_i) -> (B, 4 * reg_max + num_classes, h_i, w_i)
        return [torch.cat([box(x), cls(x)], 1) for x, box, cls in zip(features, self.box_branches, self.cls_branches)]


@functools.lru_cache(maxsize=32)
def cached_anchor_grid(sizes: tuple, strides: tuple, device: torch.device, inference: bool):
    """anchor_grid, built once per input size (and device; tensors made in inference mode are kept apart:
    autograd refuses them). Callers must not change the tensors in place."""
    return anchor_grid(sizes, strides, device)


def anchor_grid(sizes: list[tuple[int, int]], strides, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cell centres of every level, row-major, level after level: (A, 2) x, y pixels and (A, 1) strides."""
    points, point_strides = [], []
    for (height, width), stride in zip(sizes, strides):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        points.append(torch.stack([x, y], -1).reshape(-1, 2))
        point_strides.append(torch.full((height * width, 1), float(stride), device=device))
    return torch.cat(points), torch.cat(point_strides)


def _divisible(channels: float, divisor: int = 8) -> int:
    return max(divisor, int(math.ceil(channels / divisor) * divisor))


class YOLO(nn.Module):
    """Anchor-free one-stage detector; see the module docstring.

    width and depth scale YOLOv8's base channels (64, 128, 256, 512, 1024; capped at max_channels first)
    and bottleneck counts (3, 6, 6, 3 in the backbone, 3 per neck block). `loss` holds the
    training hyper-parameters (None: YOLOLoss()). conf, iou and max_det drive post-processing
    and may be changed at any time (conf=0.001 suits mAP evaluation, 0.25 prediction).
    """

    exports_nms = True  # export_module(nms=True) ends where ONNX NonMaxSuppression starts (engine/onnx_export.py)

    def __init__(self, num_classes: int, width: float = 0.25, depth: float = 0.34, max_channels: int = 1024,
                 reg_max: int = 16, loss: YOLOLoss | None = None, conf: float = 0.001, iou: float = NMS_IOU,
                 max_det: int = 300, end2end: bool = False):
        super().__init__()
        widths = [_divisible(min(c, max_channels) * width) for c in (64, 128, 256, 512, 1024)]
        depths = [max(round(d * depth), 1) for d in (3, 6, 6, 3)]
        self.backbone = Backbone(widths, depths)
        self.neck = PANNeck(self.backbone.out_channels, max(round(3 * depth), 1))
        self.head = DecoupledHead(num_classes, self.backbone.out_channels, reg_max)
        # end2end: the one-to-one head, the only one eval runs (see the module docstring)
        self.one2one = DecoupledHead(num_classes, self.backbone.out_channels, reg_max) if end2end else None
        self.end2end = end2end
        self.exports_nms = not end2end  # its graph ends with TopK: no NonMaxSuppression to append
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32), persistent=False)
        self.num_classes, self.reg_max, self.strides = num_classes, reg_max, STRIDES
        self.loss = loss or YOLOLoss()
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.exported = None  # run_exported: images -> [boxes, scores] of an exported graph, in the network's place
        self.exported_nms = False  # ... or -> [detections (B, max_det, 6)] of a graph with NMS inside

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the neck's maps at strides 8, 16, 32 (what the head, and a segmenter's branches, read)."""
        return self.neck(self.backbone(images))

    def forward_raw(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> per stride (8, 16, 32) raw (B, 4 * reg_max + num_classes, H/s, W/s) logits of the
        head eval runs: the one-to-one head of an end2end model."""
        return self.eval_head(self.features(images))

    @property
    def eval_head(self) -> DecoupledHead:
        return self.one2one if self.end2end else self.head

    def decode(self, raw: list[torch.Tensor]):
        """Raw level outputs -> cls_logits (B, A, C), box_logits (B, A, 4, R), boxes (B, A, 4) xyxy
        pixels, anchor points (A, 2) and their strides (A, 1); A sums h * w over the levels."""
        batch = raw[0].shape[0]
        flat = torch.cat([level.flatten(2) for level in raw], 2).transpose(1, 2)  # (B, A, 4R + C)
        box_logits = flat[..., :4 * self.reg_max].reshape(batch, -1, 4, self.reg_max)
        cls_logits = flat[..., 4 * self.reg_max:]
        sizes = tuple(tuple(level.shape[-2:]) for level in raw)
        if torch.compiler.is_compiling():  # traced (export): the grid becomes part of the graph; a cached
            points, strides = anchor_grid(sizes, self.strides, flat.device)  # one would hold tracing's fake tensors
        else:
            points, strides = cached_anchor_grid(sizes, tuple(self.strides), flat.device,
                                                 torch.is_inference_mode_enabled())
        distances = box_logits.softmax(-1) @ self.bins * strides  # (B, A, 4) pixels: left, top, right, bottom
        boxes = torch.cat([points - distances[..., :2], points + distances[..., 2:]], -1)
        return cls_logits, box_logits, boxes, points, strides

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        """Training: {"box", "cls", "dfl"} losses (and "*_o2o" for end2end; sum them). Eval: per image
        {boxes, scores, labels}."""
        if self.exported is not None and not self.training:
            outputs = self.exported(images)
            if self.exported_nms or self.end2end:  # the graph gives the final rows
                return self.unpack_detections(outputs[0])
            boxes, scores = outputs
            return self.postprocess(scores, boxes, images.shape[-2:])
        if self.training:
            if targets is None:
                raise ValueError("YOLO needs targets in training mode; call model.eval() to predict")
            return self.training_losses(self.features(images), targets)
        cls_logits, _, boxes, _, _ = self.decode(self.forward_raw(images))
        return self.postprocess(cls_logits.sigmoid(), boxes, images.shape[-2:])

    def training_losses(self, features: list[torch.Tensor], targets: list[dict]) -> dict:
        """The one-to-many head's {"box", "cls", "dfl"}; an end2end model adds its one-to-one head's
        {"box_o2o", "cls_o2o", "dfl_o2o"}: the same loss with one anchor per object, on detached features."""
        losses = self.loss(*self.decode(self.head(features)), targets)
        if self.end2end:
            one2one = self.one2one([level.detach() for level in features])
            single = self.loss.one_to_one()(*self.decode(one2one), targets)
            losses.update({f"{name}_o2o": value for name, value in single.items()})
        return losses

    def export_module(self, nms: bool = False) -> nn.Module:
        """What ONNX export traces: images -> (boxes (B, A, 4) pixels, class scores (B, A, C)), the
        post-processing (threshold, NMS) left to foveal; with `nms`, the inputs of ONNX NonMaxSuppression
        instead (see nms_inputs), which the exporter appends. An end2end model's: images -> its final
        (B, max_det, 6) rows (top_rows), with no conf applied."""
        return DecodedOutputs(self, nms)

    def run_exported(self, run, nms: bool = False) -> "YOLO":
        """From now on, evaluate with `run`: images -> [boxes, scores] of an exported export_module, or with
        `nms`, -> [detections (B, max_det, 6)] of a graph with NMS inside."""
        self.exported, self.exported_nms = run, nms
        return self

    def unpack_detections(self, table: torch.Tensor) -> list[dict]:
        """(B, max_det, 6) rows x1, y1, x2, y2, score, class, best first, zero rows after the last ->
        per image {boxes, scores, labels}: the rows above this model's conf, at most max_det of them."""
        return [{"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long()}
                for rows in self.kept_rows(table)]

    def kept_rows(self, table: torch.Tensor) -> list[torch.Tensor]:
        """Per image, the rows of a (B, max_det, 6 + extra columns) table above this model's conf, at most
        max_det of them, in float32."""
        return [rows[rows[:, 4] > self.conf][:self.max_det] for rows in table.float()]

    def fuse(self) -> "YOLO":
        """Fold each BatchNorm into the convolution before it (for evaluation: frozen statistics); the
        same outputs to rounding, one pass over the activations fewer per layer."""
        if self.training:
            raise ValueError("fuse() folds frozen BatchNorm statistics: call model.eval() first")
        for module in self.modules():
            if isinstance(module, ConvBNAct) and isinstance(module.bn, nn.BatchNorm2d):
                channels_last = module.conv.weight.is_contiguous(memory_format=torch.channels_last)
                module.conv = fuse_conv_bn_eval(module.conv, module.bn)
                if channels_last:
                    module.conv.to(memory_format=torch.channels_last)
                module.bn = nn.Identity()
        return self

    def postprocess(self, scores: torch.Tensor, boxes: torch.Tensor, image_size) -> list[dict]:
        """scores (B, A, C), boxes (B, A, 4) -> per image {boxes (K, 4), scores (K,), labels (K,)}: NMS's
        survivors, or an end2end model's best max_det pairs (no NMS)."""
        if self.end2end:
            return self.unpack_detections(top_rows(scores, boxes, image_size, self.max_det))
        return [self.select(image_scores, image_boxes, image_size)[0]
                for image_scores, image_boxes in zip(scores, boxes)]

    def select(self, scores: torch.Tensor, boxes: torch.Tensor, image_size) -> tuple[dict, torch.Tensor]:
        """One image's scores (A, C) and boxes (A, 4) -> its detections {boxes, scores, labels} and the
        anchor (K,) each came from (a segmenter reads that anchor's mask coefficients)."""
        height, width = image_size
        anchor, label = (scores > self.conf).nonzero(as_tuple=True)  # (N,) each
        score = scores[anchor, label]
        if len(score) > MAX_CANDIDATES:
            score, order = score.topk(MAX_CANDIDATES)
            anchor, label = anchor[order], label[order]
        box = clip_boxes(boxes[anchor], height, width)
        keep = batched_nms(box, score, label, self.iou)[:self.max_det]
        return {"boxes": box[keep], "scores": score[keep], "labels": label[keep]}, anchor[keep]


def nms_inputs(scores: torch.Tensor, boxes: torch.Tensor, image_size, conf: float):
    """postprocess's candidate selection in tensor form, for a graph with ONNX NonMaxSuppression after it:
    scores (B, A, C), boxes (B, A, 4) -> boxes (B, A, 4) clipped to the image and scores (B, C, A), float32
    (what NonMaxSuppression takes), -1 for the pairs postprocess leaves out (at or below conf, or outside the
    best MAX_CANDIDATES): below any score threshold, whether the runtime compares with > or >=."""
    height, width = image_size
    boxes = clip_boxes(boxes, height, width)
    flat = scores.float().flatten(1)  # (B, A * C)
    # the MAX_CANDIDATES-th best score of each image; zeros appended keep k fixed when A * C is smaller
    padded = torch.cat([flat, flat.new_zeros(flat.shape[0], MAX_CANDIDATES)], 1)
    kth_best = padded.topk(MAX_CANDIDATES, 1).values[:, -1:]  # (B, 1)
    kept = (flat > conf) & (flat >= kth_best)
    scores = torch.where(kept, flat, -1.0).reshape(scores.shape)
    return boxes.float(), scores.transpose(1, 2).contiguous()


def top_rows(scores: torch.Tensor, boxes: torch.Tensor, image_size, max_det: int) -> torch.Tensor:
    """An end2end model's whole post-processing, in tensor form (PyTorch's eval and the exported graph run
    it alike): scores (B, A, C), boxes (B, A, 4) -> (B, max_det, 6) rows x1, y1, x2, y2 (clipped), score,
    class of the best max_det (anchor, class) pairs, best first; no threshold (the caller's conf filters).
    Two TopKs, the first over each anchor's best class: the best max_det anchors hold the best max_det pairs
    (a pair's anchor scores at least the pair), and the second ranks their A' * C pairs, not all A * C."""
    height, width = image_size
    batch, _, classes = scores.shape
    # max_det empty anchors (score -1, zero box) keep k fixed for any input size: rows with score -1
    # where an image has fewer than max_det pairs
    scores, boxes = scores.float(), clip_boxes(boxes, height, width).float()
    scores = torch.cat([scores, scores.new_full((batch, max_det, classes), -1.0)], 1)
    boxes = torch.cat([boxes, boxes.new_zeros(batch, max_det, 4)], 1)
    anchors = scores.amax(-1).topk(max_det, 1).indices  # (B, K)
    candidates = scores.gather(1, anchors[..., None].expand(-1, -1, classes))  # (B, K, C)
    best, pairs = candidates.flatten(1).topk(max_det, 1)  # (B, K) each
    anchors = anchors.gather(1, torch.div(pairs, classes, rounding_mode="floor"))
    labels = (pairs % classes).float()
    chosen = boxes.gather(1, anchors[..., None].expand(-1, -1, 4))  # (B, K, 4)
    return torch.cat([chosen, best[..., None], labels[..., None]], -1)


class DecodedOutputs(nn.Module):
    """A YOLO's boxes and class scores before post-processing (YOLO.export_module); with `nms`, as
    nms_inputs prepares them; an end2end model's final rows (top_rows)."""

    def __init__(self, yolo: YOLO, nms: bool = False):
        super().__init__()
        self.yolo, self.nms = yolo, nms

    def forward(self, images):
        if self.yolo.end2end:
            cls_logits, _, boxes, _, _ = self.yolo.decode(self.yolo.forward_raw(images))
            return top_rows(cls_logits.sigmoid(), boxes, images.shape[-2:], self.yolo.max_det)
        return self.boxes_and_scores(self.yolo.forward_raw(images), images.shape[-2:])

    def boxes_and_scores(self, raw: list[torch.Tensor], image_size) -> tuple[torch.Tensor, torch.Tensor]:
        """The head's raw outputs -> (boxes, scores): decoded, or with `nms` as nms_inputs prepares them."""
        cls_logits, _, boxes, _, _ = self.yolo.decode(raw)
        if self.nms:
            return nms_inputs(cls_logits.sigmoid(), boxes, image_size, self.yolo.conf)
        return boxes, cls_logits.sigmoid()


@register_model("detect")
def yolo_n(num_classes: int, imgsz: int = 320, **kwargs) -> YOLO:
    """~3M parameters: real time on 2 CPU cores at 320 pixels."""
    return YOLO(num_classes, width=0.25, depth=0.34, **kwargs)


@register_model("detect")
def yolo_s(num_classes: int, imgsz: int = 320, **kwargs) -> YOLO:
    """~11M parameters: twice the width of yolo_n."""
    return YOLO(num_classes, width=0.5, depth=0.34, **kwargs)


@register_model("detect")
def yolo_m(num_classes: int, imgsz: int = 320, **kwargs) -> YOLO:
    """~26M parameters: wider and twice as deep; for a GPU."""
    return YOLO(num_classes, width=0.75, depth=0.67, max_channels=768, **kwargs)
