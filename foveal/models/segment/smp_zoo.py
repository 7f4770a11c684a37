"""Encoder-decoder segmenters from segmentation_models_pytorch (smp), named `<architecture>_<encoder>`.

smp pairs any of its encoders (one feature map per stage) with any of its decoders; we register a
few pairs that train on a CPU. They follow the semantic contract as they are: (B, 3, H, W) ->
(B, num_classes, H, W) logits, H and W multiples of 32 (smp checks and says so). Built with
encoder_weights=None, smp never reaches the Hugging Face hub (it downloads only to fetch weights).

DeepLabV3+ pools its deepest features to 1x1 and batch-normalises them (the ASPP image-pooling
branch), so in training it needs at least two images per batch.
"""

import segmentation_models_pytorch as smp

from ...registry import register_model

ARCHITECTURES = {"deeplabv3plus": smp.DeepLabV3Plus, "unet": smp.Unet, "fpn": smp.FPN}


def _register(name: str):
    architecture, encoder = name.split("_", 1)

    def builder(num_classes: int, imgsz: int | None = None, **kwargs):
        """`imgsz` is accepted, like every segment model does, and unused; kwargs go to smp."""
        return ARCHITECTURES[architecture](encoder_name=encoder, encoder_weights=None, classes=num_classes,
                                           **kwargs)

    register_model("segment", name, family="smp", kind="semantic")(builder)


for _name in ("deeplabv3plus_resnet18", "deeplabv3plus_resnet34", "deeplabv3plus_resnet50",
              "deeplabv3plus_mobilenet_v2", "unet_resnet18", "unet_resnet34", "fpn_resnet18"):
    _register(_name)
