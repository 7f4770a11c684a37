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
"""

from torch import nn
from torchvision.models import detection
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from ...ops.boxes import NMS_IOU
from ...registry import register_model


class TorchvisionDetector(nn.Module):
    def __init__(self, model: nn.Module, background_label: bool, conf: float = 0.001, iou: float = NMS_IOU,
                 max_det: int = 300):
        super().__init__()
        self.model = model
        self.offset = 1 if background_label else 0
        self.conf, self.iou, self.max_det = conf, iou, max_det

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
        return [{"boxes": o["boxes"], "scores": o["scores"], "labels": o["labels"] - self.offset}
                for o in self.model(images)]


def _size_kwargs(imgsz: int) -> dict:
    # torchvision rescales every image to min_size=800 by default: keep the size foveal letterboxed to
    return {"min_size": imgsz, "max_size": imgsz}


def _register(name, build, background_label, kind=""):
    def builder(num_classes: int, imgsz: int = 320, **kwargs):
        return TorchvisionDetector(build(num_classes + background_label, imgsz), background_label, **kwargs)

    register_model("detect", name, family="torchvision", kind=kind)(builder)


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
