"""Every classification architecture torchvision provides, registered under torchvision's name.

Built with `weights=None` (nothing is ever downloaded) and the head sized for `num_classes`; the
state-dict keys stay torchvision's, so a torchvision .pth file loads into them as it is.
"""

import functools

import torchvision

from ...registry import register_model


def _build(name: str, num_classes: int, imgsz: int = 224, **kwargs):
    if name in ("googlenet", "inception_v3"):
        # aux heads only help the original ImageNet schedule; without them forward returns logits
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    if name.startswith("vit_"):
        kwargs = {"image_size": imgsz, **kwargs}  # position embeddings are made for one size
    if name == "maxvit_t":
        kwargs = {"input_size": (imgsz, imgsz), **kwargs}
    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)


for _name in torchvision.models.list_models(module=torchvision.models):
    register_model("classify", _name, family="torchvision")(functools.partial(_build, _name))
