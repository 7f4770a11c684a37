"""torchvision's segmenters behind foveal's segment contracts.

Semantic (FCN, DeepLabV3, LR-ASPP): `forward(x)` maps a float (B, 3, H, W) tensor to
(B, num_classes, H, W) logits. torchvision returns a dict {"out": ..., "aux": ...}; the auxiliary
head is left out (aux_loss=False) and the wrapper returns the "out" tensor.

Instance (Mask R-CNN): foveal's detector contract (see foveal/models/detect/torchvision_zoo.py)
plus masks. Training targets also carry "masks" (N, H, W) uint8; eval results also carry "masks"
(K, H, W) float probabilities in [0, 1], pasted into the image (threshold them, e.g. at 0.5, for
binary masks). It does not export to ONNX: see TorchvisionDetector.export_module.

Everything is built with weights=None and weights_backbone=None: nothing is downloaded.
"""

from torch import nn
from torchvision.models import detection, segmentation
from torchvision.models.detection.backbone_utils import resnet_fpn_backbone

from ...registry import register_model
from ..detect.torchvision_zoo import TorchvisionDetector, _size_kwargs, _torchvision


class TorchvisionSemanticSegmenter(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x):  # (B, 3, H, W) -> (B, num_classes, H, W)
        return self.model(x)["out"]


def _register_semantic(name: str):
    # LR-ASPP has no auxiliary head, and its builder refuses the aux_loss argument
    aux = {} if name.startswith("lraspp") else {"aux_loss": False}

    def builder(num_classes: int, imgsz: int | None = None, **kwargs):
        """`imgsz` is accepted, like every segment model does, and unused; kwargs go to torchvision."""
        build = getattr(segmentation, name)
        return TorchvisionSemanticSegmenter(build(weights=None, weights_backbone=None, num_classes=num_classes,
                                                  **aux, **kwargs))

    register_model("segment", name, family="torchvision", kind="semantic")(builder)


for _name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101",
              "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large"):
    _register_semantic(_name)


class TorchvisionInstanceSegmenter(TorchvisionDetector):
    """A TorchvisionDetector whose targets and results also carry masks."""

    export_instead = "no instance segmenter exports; the semantic ones do (unet, deeplabv3plus_*, fcn_*, ...)"

    def forward(self, images, targets=None):
        images = list(images.unbind(0))
        if self.training:  # every key passes, masks included; labels move past the background label 0
            return self.model(images, [{**t, "labels": t["labels"] + self.offset} for t in targets])
        self._thresholds()
        return [self._result(output) for output in self.model(images)]

    def _result(self, output: dict) -> dict:
        return {"boxes": output["boxes"], "scores": output["scores"], "labels": output["labels"] - self.offset,
                "masks": output["masks"].squeeze(1)}  # (K, 1, H, W) -> (K, H, W)


def _maskrcnn_resnet18(num_classes: int, imgsz: int):
    # resnet_fpn_backbone defaults to FrozenBatchNorm2d, which without trained statistics normalises
    # nothing; torchvision's own builders switch to BatchNorm2d when no weights are loaded, so do we.
    backbone = resnet_fpn_backbone(backbone_name="resnet18", weights=None, norm_layer=nn.BatchNorm2d,
                                   trainable_layers=5)
    # Fewer proposals and RoI samples than torchvision's defaults (2000/1000 proposals, 512 RoIs per
    # image), which are sized for 800 px COCO images: every proposal costs a pass through the box
    # head and every positive RoI one through the mask head (0.46 GMACs each), most of the compute at
    # CPU-sized inputs (torchvision's _320 detectors cut them too). 64 RoIs keep up to 16 positives.
    return detection.MaskRCNN(backbone, num_classes=num_classes, rpn_pre_nms_top_n_train=1000,
                              rpn_post_nms_top_n_train=500, rpn_pre_nms_top_n_test=500, rpn_post_nms_top_n_test=250,
                              box_batch_size_per_image=64, **_size_kwargs(imgsz))


def _register_instance(name: str, build):
    def builder(num_classes: int, imgsz: int = 320, **kwargs):
        """kwargs: conf, iou, max_det (see TorchvisionDetector)."""
        return TorchvisionInstanceSegmenter(build(num_classes + 1, imgsz), background_label=True, name=name,
                                            **kwargs)

    # the README's Mask R-CNN figure trained at 2e-4 (torchvision's detectors want far smaller rates than ours)
    register_model("segment", name, family="torchvision", kind="instance", defaults={"lr": 2e-4})(builder)


_register_instance("maskrcnn_resnet18_fpn", _maskrcnn_resnet18)
for _name in ("maskrcnn_resnet50_fpn", "maskrcnn_resnet50_fpn_v2"):
    _register_instance(_name, _torchvision(_name))
