"""torchvision's detectors (Faster R-CNN, RetinaNet, FCOS, SSD) behind foveal's detector contract.

Contract (the same as foveal's own YOLO): `forward(images, targets=None)` with images a float
(B, 3, H, W) tensor in [0, 1]; in training a dict of losses, in eval a list of
{boxes (K, 4) xyxy pixels, scores (K,), labels (K,) in [0, classes)}. torchvision wants a list
of images, reserves label 0 for background in Faster R-CNN and SSD, and resizes inputs itself:
the wrapper bridges all three. Built with weights=None and weights_backbone=None: nothing is
downloaded; `pretrained=` loads a local file.

Input size: Faster R-CNN, RetinaNet and FCOS are told to keep foveal's letterboxed size (`imgsz`);
SSD300 and SSDlite320 resize every image to their fixed 300 and 320 px, whatever `imgsz` is, because
their anchor layouts are tied to that size. Boxes always come back in the caller's pixels.

Speed: a two-stage detector pays per proposal. fasterrcnn_mobilenet_v3_large_fpn keeps up to
1000 post-NMS RPN proposals at test time (untrained, all 1000 pass its RPN score threshold of 0.05),
and each is RoI-aligned to 256x7x7 and pushed through 12544->1024->1024 linear layers: 13.9 GMACs
at any input size, against 0.6 for backbone and FPN at 320 px. The `_320_fpn` variant keeps 150
proposals (torchvision's speed tuning): 2.1 GMACs. See benchmarks/detect_speed.py.

ONNX: the one-stage detectors (RetinaNet, FCOS, SSD) export their dense part (resize and normalise,
backbone, head, anchors) at a fixed size, and keep torchvision's own post-processing (top-k per level,
threshold, box decoding, NMS) in PyTorch around the graph, as YOLO does. The two-stage ones (Faster
R-CNN, and Mask R-CNN beside them) are refused: their proposals pass NMS between the two stages, so no
part of them after the RPN has a size torch.export can know.
"""

import functools

import torch
from torch import nn
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
from torchvision.models.detection.ssd import SSD

from ...errors import FovealError
from ...ops.boxes import NMS_IOU
from ...registry import register_model


class TorchvisionDetector(nn.Module):
    export_instead = "for ONNX use a one-stage detector (yolo_n/s/m, retinanet_*, fcos_*, ssd*)"

    def __init__(self, model: nn.Module, background_label: bool, conf: float = 0.001, iou: float = NMS_IOU,
                 max_det: int = 300, name: str = "this torchvision detector"):
        super().__init__()
        self.model = model
        self.offset = 1 if background_label else 0
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.name = name  # the registered name, for export's refusal
        self.exported = None  # run_exported: images -> DenseOutputs of an exported graph, in the network's place

    @property
    def fixed_size_export(self) -> str | None:
        """Why export refuses dynamic=true (torch.export would quietly fix the batch at its example's);
        None for the two-stage models, which export_module refuses whole."""
        if hasattr(self.model, "roi_heads"):
            return None
        return "torchvision's transform resizes each image on its own, so the batch size is fixed"

    def _thresholds(self):
        """Copy conf/iou/max_det into the attribute names each torchvision family uses."""
        holder = getattr(self.model, "roi_heads", self.model)
        holder.score_thresh, holder.nms_thresh, holder.detections_per_img = self.conf, self.iou, self.max_det

    def forward(self, images, targets=None):
        images = list(images.unbind(0))
        if self.training:
            shifted = [{"boxes": t["boxes"], "labels": t["labels"] + self.offset} for t in targets]
            return self.model(images, shifted)
        self._thresholds()
        outputs = self.model(images) if self.exported is None else self._detect_exported(images)
        return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - self.offset} for o in outputs]

    def export_module(self) -> nn.Module:
        """What ONNX export traces: images -> DenseOutputs (the post-processing stays torchvision's)."""
        if hasattr(self.model, "roi_heads"):
            raise FovealError(f"export: {self.name} cannot be exported to ONNX: its second stage runs on the "
                              "proposals left after NMS, a data-dependent number torch.export cannot trace; "
                              f"{self.export_instead}")
        return DenseOutputs(self.model)

    def run_exported(self, run) -> "TorchvisionDetector":
        """From now on, evaluate with `run` (images -> the outputs of an exported export_module)."""
        self.exported = run
        return self

    def _detect_exported(self, images: list[torch.Tensor]) -> list[dict]:
        """torchvision's eval forward, with the exported graph in the place of its dense part."""
        keys = head_keys(self.model)
        outputs = self.exported(torch.stack(images))
        levels = len(outputs) // (len(keys) + 1)
        head = {key: outputs[k * levels:(k + 1) * levels] for k, key in enumerate(keys)}
        anchors = [[level[i] for level in outputs[-levels:]] for i in range(len(images))]  # per image, per level
        if isinstance(self.model, SSD):  # SSD takes its outputs whole, not split by level
            head, anchors = {key: value[0] for key, value in head.items()}, [image[0] for image in anchors]
        resized = [self._resized_size(tuple(image.shape)) for image in images]
        detections = self.model.postprocess_detections(head, anchors, resized)
        return self.model.transform.postprocess(detections, resized, [tuple(i.shape[-2:]) for i in images])

    @functools.lru_cache(maxsize=8)
    def _resized_size(self, shape: tuple[int, ...]) -> tuple[int, int]:
        """The size torchvision's transform resizes an image of `shape` to (it depends on the shape only:
        worked out once per shape, not by resizing every image again beside the graph that did)."""
        blank = torch.zeros(shape, device=next(self.model.parameters()).device)
        return tuple(self.model.transform([blank])[0].image_sizes[0])


def head_keys(model: nn.Module) -> tuple[str, ...]:
    """The head outputs of a one-stage torchvision detector, in the order DenseOutputs returns them."""
    return ("cls_logits", "bbox_regression") + (("bbox_ctrness",) if isinstance(model, detection.FCOS) else ())


class DenseOutputs(nn.Module):
    """A one-stage torchvision detector up to its post-processing (TorchvisionDetector.export_module):
    images (B, 3, H, W) -> for each of head_keys, then the anchors, one tensor per feature level:
    (B, N, classes) class logits, (B, N, 4) box deltas, [(B, N, 1) FCOS centreness], (B, N, 4) anchors,
    N the anchors of the level; SSD's whole, as one level."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        resized = self.model.transform(list(images.unbind(0)))[0]  # torchvision's resize, normalise and pad
        features = self.model.backbone(resized.tensors)
        features = [features] if isinstance(features, torch.Tensor) else list(features.values())
        head = self.model.head(features)
        anchors = torch.stack(self.model.anchor_generator(resized, features))  # (B, all anchors, 4)
        if isinstance(self.model, SSD):
            return *[head[key] for key in head_keys(self.model)], anchors
        # anchors per level: the same count at every location of a level (A = HWA // HW, as RetinaNet works it out)
        locations = [f.shape[-2] * f.shape[-1] for f in features]
        per_level = [n * (anchors.shape[1] // sum(locations)) for n in locations]
        return tuple(part for key in head_keys(self.model) for part in head[key].split(per_level, 1)) + \
            anchors.split(per_level, 1)


def _size_kwargs(imgsz: int) -> dict:
    # torchvision rescales every image to min_size=800 by default: keep the size foveal letterboxed to
    return {"min_size": imgsz, "max_size": imgsz}


def _register(name, build, background_label, kind=""):
    def builder(num_classes: int, imgsz: int = 320, **kwargs):
        return TorchvisionDetector(build(num_classes + background_label, imgsz), background_label, name=name,
                                   **kwargs)

    # from scratch they diverge at yolo's 4e-3 (RetinaNet, SSD300); test_detect_zoo trains each at 1e-4
    register_model("detect", name, family="torchvision", kind=kind, defaults={"lr": 1e-4})(builder)


def _torchvision(builder_name: str):
    def build(num_classes, imgsz):
        return getattr(detection, builder_name)(weights=None, weights_backbone=None, num_classes=num_classes,
                                                **_size_kwargs(imgsz))

    return build


def _faster_rcnn_resnet18(num_classes, imgsz):
    # resnet_fpn_backbone defaults to FrozenBatchNorm2d, which with untrained statistics normalises
    # nothing; torchvision's own builders use BatchNorm2d when no backbone weights are loaded, and so do we
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5)
    return detection.FasterRCNN(backbone, num_classes=num_classes, **_size_kwargs(imgsz))


def _ssd300(num_classes, imgsz):
    return detection.ssd300_vgg16(weights=None, weights_backbone=None, num_classes=num_classes)


def _ssdlite(num_classes, imgsz):
    return detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=num_classes)


_register("fasterrcnn_resnet18_fpn", _faster_rcnn_resnet18, True)
for _name in ("fasterrcnn_resnet50_fpn", "fasterrcnn_resnet50_fpn_v2", "fasterrcnn_mobilenet_v3_large_fpn",
              "fasterrcnn_mobilenet_v3_large_320_fpn"):
    _register(_name, _torchvision(_name), True)
for _name in ("retinanet_resnet50_fpn", "retinanet_resnet50_fpn_v2", "fcos_resnet50_fpn"):
    _register(_name, _torchvision(_name), False)
_register("ssd300_vgg16", _ssd300, True, kind="fixed_size")  # they resize every input to their own square
_register("ssdlite320_mobilenet_v3_large", _ssdlite, True, kind="fixed_size")
