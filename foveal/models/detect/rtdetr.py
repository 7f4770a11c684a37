"""An RT-DETR-style transformer detector: rtdetr_r18, rtdetr_r34, rtdetr_r50 (Zhao et al. 2024, "DETRs Beat
YOLOs on Real-time Object Detection"), sized to train on a CPU by default.

    backbone   a torchvision ResNet (weights=None; `pretrained=` a local ImageNet .pth loads into it, its
               parameter names being torchvision's under `backbone.`), maps at strides 8, 16, 32
    encoder    hybrid: one transformer layer within the stride-32 map only (AIFI: attention where the
               tokens are few and semantic), then cross-scale fusion of the three maps by convolutions
               (CCFM: top-down, then bottom-up)
    queries    every encoder position scores the classes and proposes a box around its cell; the top
               `num_queries` by best class score become the decoder's queries and reference boxes
    decoder    `decoder_layers` layers of self-attention among the queries, then multi-scale deformable
               cross-attention (each query samples a few learned points per level and head around its
               reference box, with grid_sample), then a feed-forward; each layer refines the boxes

Detection is set prediction: each ground truth is matched to one query (Hungarian matching on class,
L1 and GIoU cost, rtdetr_loss.py), every other query is trained towards "no object", so duplicates are
penalised in training and the answer needs no NMS: the top `max_det` (query, class) scores above `conf`.
Training also runs denoising queries, noised copies of the ground truths that the decoder learns to
restore (DN-DETR): a stable, matching-free signal that speeds up convergence; an attention mask keeps the
matching queries from seeing them. Every decoder layer and the encoder's selected queries have a loss.

Boxes inside the model are cx, cy, w, h as fractions of the input's width and height. Inputs are (B, 3,
H, W) in [0, 1] with H, W multiples of 32; the model normalises them with ImageNet's mean and std.

Export: export_module() traces the network and the top-max_det selection (TopK): the graph gives (B,
max_det, 6) rows x1, y1, x2, y2, score, class in input pixels, best first (score -1 for rows beyond the
queries' (query, class) pairs); a model running it (run_exported) keeps the rows above its own conf.
"""

import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ...registry import register_model
from .rtdetr_loss import RTDETRLoss, inverse_sigmoid
from .yolo import ConvBNAct, CSPBlock

STRIDES = (8, 16, 32)
CLASS_PRIOR = 0.01  # initial probability of every class at every query (as yolo.py's)
ANCHOR_SIZE = 0.05  # an encoder position's initial box side, in fractions of the image, at stride 8 (x2 a level)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
RESNET_LAYERS = ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4")
# AdamW, weight decay and clipping as RT-DETR's; from scratch, its lr (1e-4) learns too slowly on a CPU budget:
# shapes at 160 px, mAP50 after 3 epochs 0.01 at lr=2e-4 clip_grad=0.1, 0.14 at these
TRAINING = {"lr": 1e-3, "weight_decay": 1e-4, "clip_grad": 1.0}


class ResNetBackbone(nn.Module):
    """torchvision's ResNet without its pooling and classifier: the same parameter names, so that an
    ImageNet state_dict of resnet{depth} loads into it; returns the maps of layer2, 3, 4 (strides 8, 16, 32)."""

    def __init__(self, depth: int):
        super().__init__()
        net = getattr(torchvision.models, f"resnet{depth}")(weights=None)
        for name in RESNET_LAYERS:
            setattr(self, name, getattr(net, name))
        last = [getattr(net, f"layer{i}")[-1] for i in (2, 3, 4)]  # a Bottleneck's output is its bn3's
        self.out_channels = [(block.bn3 if hasattr(block, "bn3") else block.bn2).num_features for block in last]

    def forward(self, x):  # (B, 3, H, W) -> [(B, c3, H/8, W/8), (B, c4, H/16, W/16), (B, c5, H/32, W/32)]
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c3 = self.layer2(x)
        c4 = self.layer3(c3)
        return [c3, c4, self.layer4(c4)]


class Attention(nn.Module):
    """Multi-head attention, written out (nn.MultiheadAttention's fused eval path is not for tracing):
    query (B, N, D), key (B, M, D), value (B, M, D), blocked (N, M) bool: pairs that must not attend."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.q, self.k, self.v, self.out = (nn.Linear(dim, dim) for _ in range(4))
        self.heads = heads

    def forward(self, query, key, value, blocked: torch.Tensor | None = None):
        batch, dim = query.shape[0], query.shape[-1]
        split = (batch, -1, self.heads, dim // self.heads)
        q, k, v = (proj(x).reshape(split).transpose(1, 2)  # (B, heads, N or M, D / heads)
                   for proj, x in ((self.q, query), (self.k, key), (self.v, value)))
        scores = q @ k.transpose(-2, -1) / math.sqrt(dim // self.heads)  # (B, heads, N, M)
        if blocked is not None:
            scores = scores.masked_fill(blocked, float("-inf"))
        mixed = scores.softmax(-1) @ v  # (B, heads, N, D / heads)
        return self.out(mixed.transpose(1, 2).reshape(batch, -1, dim))


def feed_forward(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


def sincos_embedding(height, width, dim: int, device, temperature: float = 10000.0) -> torch.Tensor:
    """(1, height * width, dim) fixed 2D position code, row-major: sin and cos of x, then of y, at dim / 4
    frequencies each (a fixed code keeps the encoder usable at any input size)."""
    quarter = dim // 4
    omega = 1.0 / temperature ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter)
    ys, xs = torch.meshgrid(torch.arange(height, device=device, dtype=torch.float32),
                            torch.arange(width, device=device, dtype=torch.float32), indexing="ij")
    x, y = xs.reshape(-1, 1) * omega, ys.reshape(-1, 1) * omega  # (HW, quarter)
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], 1)[None]


class EncoderLayer(nn.Module):
    """A post-norm transformer encoder layer: self-attention (positions added to queries and keys), FFN."""

    def __init__(self, dim: int, heads: int, ffn: int):
        super().__init__()
        self.attention = Attention(dim, heads)
        self.ffn = feed_forward(dim, ffn)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, tokens, position):
        keyed = tokens + position
        tokens = self.norm1(tokens + self.attention(keyed, keyed, tokens))
        return self.norm2(tokens + self.ffn(tokens))


class HybridEncoder(nn.Module):
    """Attention within the stride-32 map (AIFI), then convolutional cross-scale fusion (CCFM): top-down
    (semantics to the fine maps), bottom-up (localisation back); every output has `hidden` channels."""

    def __init__(self, in_channels: list[int], hidden: int, heads: int, ffn: int, depth: int = 1):
        super().__init__()
        self.project = nn.ModuleList(nn.Sequential(nn.Conv2d(c, hidden, 1, bias=False), nn.BatchNorm2d(hidden))
                                     for c in in_channels)
        self.aifi = EncoderLayer(hidden, heads, ffn)
        self.lateral5, self.lateral4 = ConvBNAct(hidden, hidden), ConvBNAct(hidden, hidden)
        self.top_down4 = CSPBlock(2 * hidden, hidden, depth, shortcut=False)
        self.top_down3 = CSPBlock(2 * hidden, hidden, depth, shortcut=False)
        self.down3, self.down4 = ConvBNAct(hidden, hidden, 3, 2), ConvBNAct(hidden, hidden, 3, 2)
        self.bottom_up4 = CSPBlock(2 * hidden, hidden, depth, shortcut=False)
        self.bottom_up5 = CSPBlock(2 * hidden, hidden, depth, shortcut=False)

    def forward(self, features):  # 3 x (B, c_i, h_i, w_i) -> 3 x (B, hidden, h_i, w_i)
        p3, p4, p5 = (project(f) for project, f in zip(self.project, features))
        batch, dim, height, width = p5.shape
        tokens = self.aifi(p5.flatten(2).transpose(1, 2), sincos_embedding(height, width, dim, p5.device))
        p5 = tokens.transpose(1, 2).reshape(batch, dim, height, width)
        top5 = self.lateral5(p5)
        top4 = self.lateral4(self.top_down4(torch.cat([upsample(top5), p4], 1)))
        out3 = self.top_down3(torch.cat([upsample(top4), p3], 1))
        out4 = self.bottom_up4(torch.cat([self.down3(out3), top4], 1))
        out5 = self.bottom_up5(torch.cat([self.down4(out4), top5], 1))
        return [out3, out4, out5]


def upsample(x):
    return F.interpolate(x, scale_factor=2.0, mode="nearest")


class DeformableAttention(nn.Module):
    """Multi-scale deformable attention (Deformable DETR): each query, per head and level, samples `points`
    places around its reference box (offsets in half box sides, learned from the query) by bilinear
    grid_sample and sums them with learned weights (softmax over every level and point of a head).
    A few samples per query instead of attention over every position: linear in the map size."""

    def __init__(self, dim: int, heads: int = 8, levels: int = 3, points: int = 4):
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.offsets = nn.Linear(dim, heads * levels * points * 2)
        self.weights = nn.Linear(dim, heads * levels * points)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Offsets start as rings around the box centre, one direction per head, point k at k + 1 (the
        samples spread out from the start); uniform weights."""
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        directions = torch.stack([angles.cos(), angles.sin()], -1)
        directions = directions / directions.abs().max(-1, keepdim=True).values  # on the unit square
        rings = torch.arange(1, self.points + 1, dtype=torch.float32)[None, None, :, None]
        self.offsets.weight.zero_()
        self.offsets.bias.copy_((directions[:, None, None] * rings).expand(-1, self.levels, -1, -1).flatten())
        nn.init.zeros_(self.weights.weight)
        nn.init.zeros_(self.weights.bias)
        for linear in (self.value, self.out):
            nn.init.xavier_uniform_(linear.weight)
            nn.init.zeros_(linear.bias)

    def forward(self, query, boxes, maps):
        """query (B, Q, D), boxes (B, Q, 4) cx, cy, w, h fractions, maps [(B, D, h_l, w_l)] -> (B, Q, D)."""
        batch, count, dim = query.shape
        heads, points, head_dim = self.heads, self.points, dim // self.heads
        offsets = self.offsets(query).reshape(batch, count, heads, self.levels, points, 2)
        weights = self.weights(query).reshape(batch, count, heads, self.levels * points).softmax(-1)
        weights = weights.reshape(batch, count, heads, self.levels, points)
        centres, sides = boxes[:, :, None, None, None, :2], boxes[:, :, None, None, None, 2:]
        places = centres + offsets / points * sides * 0.5  # (B, Q, heads, levels, points, 2) in [0, 1]
        grids = 2 * places - 1  # grid_sample's [-1, 1]
        mixed = 0
        for level, features in enumerate(maps):
            height, width = features.shape[-2:]
            value = self.value(features.flatten(2).transpose(1, 2))  # (B, hw, D)
            value = value.transpose(1, 2).reshape(batch * heads, head_dim, height, width)
            grid = grids[:, :, :, level].transpose(1, 2).reshape(batch * heads, count, points, 2)
            sampled = F.grid_sample(value, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            weight = weights[:, :, :, level].transpose(1, 2).reshape(batch * heads, 1, count, points)
            mixed = mixed + (sampled * weight).sum(-1)  # (B * heads, head_dim, Q)
        return self.out(mixed.reshape(batch, dim, count).transpose(1, 2))


class DecoderLayer(nn.Module):
    """Post-norm: self-attention among the queries, deformable cross-attention to the maps, FFN."""

    def __init__(self, dim: int, heads: int, ffn: int, levels: int, points: int):
        super().__init__()
        self.self_attention = Attention(dim, heads)
        self.cross_attention = DeformableAttention(dim, heads, levels, points)
        self.ffn = feed_forward(dim, ffn)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)

    def forward(self, queries, position, boxes, maps, blocked=None):
        keyed = queries + position
        queries = self.norm1(queries + self.self_attention(keyed, keyed, queries, blocked))
        queries = self.norm2(queries + self.cross_attention(queries + position, boxes, maps))
        return self.norm3(queries + self.ffn(queries))


class MLP(nn.Sequential):
    """Linear layers with ReLU between them: dims[0] -> ... -> dims[-1]."""

    def __init__(self, *dims: int):
        layers = []
        for cin, cout in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(cin, cout), nn.ReLU()]
        super().__init__(*layers[:-1])


def anchor_boxes(sizes, device) -> torch.Tensor:
    """(N, 4) cx, cy, w, h fractions: a box around the centre of every cell of every level, row-major,
    level after level, ANCHOR_SIZE wide at the first and twice as wide at each next."""
    boxes = []
    for level, (height, width) in enumerate(sizes):
        ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height
        xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        side = torch.full_like(x, ANCHOR_SIZE * 2**level)
        boxes.append(torch.stack([x, y, side, side], -1).reshape(-1, 4))
    return torch.cat(boxes)


class Decoder(nn.Module):
    """Query selection from the encoder's maps, then the decoder layers with their class and box heads."""

    def __init__(self, num_classes: int, dim: int, heads: int, ffn: int, layers: int, num_queries: int,
                 levels: int = 3, points: int = 4):
        super().__init__()
        self.num_classes, self.num_queries = num_classes, num_queries
        self.memory = nn.Sequential(nn.Linear(dim, dim), nn.LayerNorm(dim))  # encoder positions as query contents
        self.memory_scores = nn.Linear(dim, num_classes)
        self.memory_boxes = MLP(dim, dim, dim, 4)
        self.position = MLP(4, 2 * dim, dim)  # a query's reference box -> its position code
        self.layers = nn.ModuleList(DecoderLayer(dim, heads, ffn, levels, points) for _ in range(layers))
        self.scores = nn.ModuleList(nn.Linear(dim, num_classes) for _ in range(layers))
        self.boxes = nn.ModuleList(MLP(dim, dim, dim, 4) for _ in range(layers))
        self.noised_labels = nn.Embedding(num_classes + 1, dim, padding_idx=num_classes)  # denoising queries
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self):
        """Class logits at CLASS_PRIOR (no flood of confident false positives); box refinements at zero:
        the first boxes are the encoder's, the encoder's its anchors."""
        prior = -math.log((1 - CLASS_PRIOR) / CLASS_PRIOR)
        for head in [self.memory_scores, *self.scores]:
            nn.init.constant_(head.bias, prior)
        for head in [self.memory_boxes, *self.boxes]:
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)

    def select(self, maps):
        """The top num_queries encoder positions by best class score -> (contents (B, K, D), box logits
        (B, K, 4): inverse sigmoid of cx, cy, w, h, their class logits (B, K, C), their boxes (B, K, 4))."""
        memory = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)  # (B, N, D)
        anchors = inverse_sigmoid(anchor_boxes([m.shape[-2:] for m in maps], memory.device))  # (N, 4)
        contents = self.memory(memory)
        logits = self.memory_scores(contents)  # (B, N, C)
        box_logits = self.memory_boxes(contents) + anchors
        # K rows after the last keep TopK's k fixed when a small input has fewer than K positions: zeros,
        # chosen only then (scored -inf)
        padding = memory.new_zeros(memory.shape[0], self.num_queries, 1)
        best = torch.cat([logits.detach().max(-1).values, padding[..., 0] - float("inf")], 1)
        contents, logits, box_logits = (torch.cat([x, padding.expand(-1, -1, x.shape[-1])], 1)
                                        for x in (contents, logits, box_logits))
        chosen = best.topk(self.num_queries, 1).indices  # (B, K)
        contents, logits, box_logits = (x.gather(1, chosen[..., None].expand(-1, -1, x.shape[-1]))
                                        for x in (contents, logits, box_logits))
        # the decoder starts from the selection without sending gradients back through it (RT-DETR's choice)
        return contents.detach(), box_logits.detach(), logits, box_logits.sigmoid()

    def forward(self, maps, noised=None):
        """maps [(B, D, h_l, w_l)], noised (denoising queries, from denoising_queries) or None ->
        per decoder layer class logits (L, B, Q, C) and boxes (L, B, Q, 4), the selection's logits and boxes;
        Q counts the denoising queries first. In eval only the last layer's scores are computed."""
        queries, box_logits, selected_logits, selected_boxes = self.select(maps)
        blocked = None
        if noised is not None:
            queries = torch.cat([self.noised_labels(noised["labels"]), queries], 1)
            box_logits = torch.cat([inverse_sigmoid(noised["boxes"]), box_logits], 1)
            blocked = noised["blocked"]
        boxes = box_logits.sigmoid()
        all_logits, all_boxes = [], []
        last = len(self.layers) - 1
        for i, (layer, score_head, box_head) in enumerate(zip(self.layers, self.scores, self.boxes)):
            queries = layer(queries, self.position(boxes), boxes, maps, blocked)
            refined = (box_head(queries) + inverse_sigmoid(boxes)).sigmoid()
            if self.training or i == last:
                all_logits.append(score_head(queries))
                all_boxes.append(refined)
            boxes = refined.detach()  # each layer refines the last one's boxes, its own gradient only
        return torch.stack(all_logits), torch.stack(all_boxes), selected_logits, selected_boxes


def denoising_queries(targets: list[dict], num_classes: int, count: int, label_noise: float,
                      box_noise: float) -> dict | None:
    """Noised copies of the ground truths (DN-DETR, with DINO's negatives), in groups of 2 * most objects:
    first every object of an image with its label flipped at random (probability label_noise / 2) and its
    corners moved by up to box_noise half sides (positives, to be restored), then the same objects moved by
    1 to 2 times that (negatives, to be scored as no object). As many groups as fit in `count` queries.
    targets: per image {labels (n,), boxes (n, 4) cx, cy, w, h fractions}. Returns {labels (B, P) (class
    num_classes: padding, no object), boxes (B, P, 4), groups, slots (2 * most objects), total (P)}, or None
    when no image has an object; attention_mask adds what the decoder may not look at."""
    most = max(len(t["labels"]) for t in targets)
    if most == 0 or count <= 0:
        return None
    batch, slots = len(targets), 2 * most
    groups = max(count // slots, 1)
    device = targets[0]["boxes"].device
    labels = torch.full((batch, most), num_classes, dtype=torch.long, device=device)  # padding: no object
    boxes = torch.zeros(batch, most, 4, device=device)
    for i, target in enumerate(targets):
        labels[i, :len(target["labels"])] = target["labels"]
        boxes[i, :len(target["labels"])] = target["boxes"]
    real = labels < num_classes
    labels, boxes, real = labels.repeat(1, 2 * groups), boxes.repeat(1, 2 * groups, 1), real.repeat(1, 2 * groups)
    negative = (torch.arange(labels.shape[1], device=device) % slots >= most)[None, :, None]  # (1, P, 1)
    if label_noise > 0:
        flip = (torch.rand(labels.shape, device=device) < label_noise * 0.5) & real
        labels = torch.where(flip, torch.randint_like(labels, num_classes), labels)
    if box_noise > 0:
        corners = convert(boxes, "cxcywh", "xyxy")
        half_sides = boxes[..., 2:].repeat(1, 1, 2) * 0.5 * box_noise
        sign = torch.randint_like(corners, 2) * 2 - 1
        amount = torch.rand_like(corners) + negative.float()
        corners = (corners + sign * amount * half_sides).clamp(0, 1)
        boxes = convert(corners, "xyxy", "cxcywh")
    total = labels.shape[1]
    return {"labels": labels, "boxes": boxes, "groups": groups, "slots": slots, "total": total}


def attention_mask(noised: dict, matching: int, device) -> torch.Tensor:
    """(P + K, P + K) bool, True where a query may not look: matching queries see no denoising query (they
    would read the answers), and a denoising group sees no other group."""
    total, slots = noised["total"], noised["slots"]
    blocked = torch.zeros(total + matching, total + matching, dtype=torch.bool, device=device)
    blocked[total:, :total] = True
    group = torch.arange(total, device=device) // slots
    blocked[:total, :total] = group[:, None] != group[None, :]
    return blocked


def convert(boxes: torch.Tensor, source: str, target: str) -> torch.Tensor:
    return torchvision.ops.box_convert(boxes, source, target)


def detection_rows(logits: torch.Tensor, boxes: torch.Tensor, height, width, max_det: int) -> torch.Tensor:
    """Class logits (B, Q, C) and boxes (B, Q, 4) cx, cy, w, h fractions -> (B, max_det, 6) rows x1, y1,
    x2, y2, score, class in input pixels of the best (query, class) pairs, best first; rows past the Q * C
    pairs zero with score -1. Traced by export as it is: no data-dependent control flow."""
    batch, count, classes = logits.shape
    scores = logits.sigmoid().flatten(1)  # (B, Q * C)
    scores = torch.cat([scores, scores.new_full((batch, max_det), -1.0)], 1)  # keeps TopK's k fixed
    best, index = scores.topk(max_det, 1)  # (B, max_det)
    query = (index // classes).clamp(max=count - 1)
    label = (index % classes).float()
    chosen = boxes.gather(1, query[..., None].expand(-1, -1, 4))
    corners = convert(chosen, "cxcywh", "xyxy")
    x, y = corners[..., 0::2] * width, corners[..., 1::2] * height
    corners = torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1)
    found = best >= 0
    rows = torch.cat([corners * found[..., None], best[..., None], torch.where(found, label, -1.0)[..., None]], -1)
    return rows


class RTDETR(nn.Module):
    """Transformer detector with Hungarian matching, no NMS; see the module docstring.

    depth: the ResNet's (18, 34, 50). hidden: the encoder's and decoder's width; heads, ffn: their attention
    heads and feed-forward width; num_queries: the decoder's queries (the most objects an image can have);
    denoising: denoising queries in training (0: none). conf and max_det drive post-processing and may be
    changed at any time; iou is kept for the detector contract only (there is no NMS).
    """

    exports_nms = False  # export_module's graph ends with the top max_det rows: nothing to append

    def __init__(self, num_classes: int, depth: int = 18, hidden: int = 128, heads: int = 8, ffn: int = 512,
                 num_queries: int = 100, decoder_layers: int = 3, points: int = 4, denoising: int = 100,
                 label_noise: float = 0.5, box_noise: float = 1.0, loss: RTDETRLoss | None = None,
                 conf: float = 0.001, iou: float = 0.7, max_det: int = 300):
        super().__init__()
        self.backbone = ResNetBackbone(depth)
        self.encoder = HybridEncoder(self.backbone.out_channels, hidden, heads, ffn)
        self.decoder = Decoder(num_classes, hidden, heads, ffn, decoder_layers, num_queries, len(STRIDES), points)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.num_classes, self.strides = num_classes, STRIDES
        self.denoising, self.label_noise, self.box_noise = denoising, label_noise, box_noise
        self.criterion = loss or RTDETRLoss()
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.exported = None  # run_exported: images -> [rows (B, max_det, 6)] of an exported graph

    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> the encoder's maps at strides 8, 16, 32, (B, hidden, H/s, W/s)."""
        return self.encoder(self.backbone((images - self.mean) / self.std))

    def forward(self, images: torch.Tensor, targets: list[dict] | None = None):
        """Training: {"cls", "l1", "giou"} losses (sum them). Eval: per image {boxes, scores, labels}."""
        if self.exported is not None and not self.training:
            return self.unpack_detections(self.exported(images)[0])
        if not self.training:
            return self.unpack_detections(self.export_module()(images))
        if targets is None:
            raise ValueError("RTDETR needs targets in training mode; call model.eval() to predict")
        height, width = images.shape[-2:]
        scale = images.new_tensor([width, height, width, height])
        fractions = [{"labels": t["labels"].to(images.device).long(),
                      "boxes": convert(t["boxes"].to(images.device).float() / scale, "xyxy", "cxcywh")}
                     for t in targets]
        noised = denoising_queries(fractions, self.num_classes, self.denoising, self.label_noise, self.box_noise)
        if noised is not None:
            noised["blocked"] = attention_mask(noised, self.decoder.num_queries, images.device)
        logits, boxes, selected_logits, selected_boxes = self.decoder(self.features(images), noised)
        return self.criterion(logits, boxes, selected_logits, selected_boxes, fractions, noised)

    def export_module(self) -> nn.Module:
        """What ONNX export traces: images -> (B, max_det, 6) rows (detection_rows)."""
        return DetectionRows(self)

    def run_exported(self, run, nms: bool = False) -> "RTDETR":
        """From now on, evaluate with `run`: images -> [rows (B, max_det, 6)] of an exported export_module."""
        self.exported = run
        return self

    def unpack_detections(self, table: torch.Tensor) -> list[dict]:
        """(B, max_det, 6) rows, best first -> per image {boxes, scores, labels}: the rows above this model's
        conf, at most max_det of them."""
        kept = [rows[rows[:, 4] > self.conf][:self.max_det] for rows in table.float()]
        return [{"boxes": rows[:, :4], "scores": rows[:, 4], "labels": rows[:, 5].long()} for rows in kept]


class DetectionRows(nn.Module):
    """An RTDETR's eval network up to its (B, max_det, 6) rows (RTDETR.export_module)."""

    def __init__(self, model: RTDETR):
        super().__init__()
        self.model = model

    def forward(self, images):
        logits, boxes, _, _ = self.model.decoder(self.model.features(images))
        return detection_rows(logits[-1], boxes[-1], images.shape[-2], images.shape[-1], self.model.max_det)


@register_model("detect", defaults=TRAINING)
def rtdetr_r18(num_classes: int, imgsz: int = 320, **kwargs) -> RTDETR:
    """ResNet-18 backbone, hidden 128, 3 decoder layers, 100 queries: ~13M parameters (11M of them the ResNet)."""
    return RTDETR(num_classes, depth=18, **kwargs)


@register_model("detect", defaults=TRAINING)
def rtdetr_r34(num_classes: int, imgsz: int = 320, **kwargs) -> RTDETR:
    """ResNet-34 backbone, otherwise rtdetr_r18's."""
    return RTDETR(num_classes, depth=34, **kwargs)


@register_model("detect", defaults=TRAINING)
def rtdetr_r50(num_classes: int, imgsz: int = 320, **kwargs) -> RTDETR:
    """ResNet-50 backbone (2048-channel stride-32 map), hidden 256 and 6 decoder layers as the paper's; for a GPU."""
    kwargs = {"hidden": 256, "ffn": 1024, "decoder_layers": 6, "num_queries": 300, **kwargs}
    return RTDETR(num_classes, depth=50, **kwargs)
