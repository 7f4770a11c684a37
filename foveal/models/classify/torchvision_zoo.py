"""Every classification architecture torchvision provides, registered under torchvision's name.

Built with `weights=None` (nothing is ever downloaded) and the head sized for `num_classes`; the
state-dict keys stay torchvision's, so a torchvision .pth file loads into them as it is.
An `imgsz` the architecture cannot take is refused here, as one line naming the rule, rather than
as a torch error deep inside the first training step.
"""

import functools
import itertools

import torch
import torchvision
from torch import nn
from torch.func import functional_call

from ...errors import FovealError
from ...registry import register_model


def _build(name: str, num_classes: int, imgsz: int = 224, **kwargs):
    if name in ("googlenet", "inception_v3"):
        # aux heads only help the original ImageNet schedule; without them forward returns logits
        kwargs = {"aux_logits": False, "init_weights": True, **kwargs}
    if name.startswith("vit_"):
        check_patch_size(name, imgsz)
        kwargs = {"image_size": imgsz, **kwargs}  # position embeddings are made for one size
    if name == "maxvit_t":
        kwargs = {"input_size": (imgsz, imgsz), **kwargs}
    try:
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs)
    except ValueError as e:
        if name != "maxvit_t":
            raise
        # its 7x7 attention windows must tile every stage's feature map
        raise FovealError(f"imgsz: {imgsz} does not suit {name} (multiples of 224 do): {_first_line(e)}") from None
    check_runs_at(model, name, imgsz)
    return model


def check_patch_size(name: str, imgsz: int):
    """A ViT cuts the image into square patches (vit_b_16: 16x16 pixels), so imgsz must be a multiple."""
    patch = int(name.rsplit("_", 1)[1])
    if imgsz % patch:
        smaller, larger = imgsz // patch * patch, (imgsz // patch + 1) * patch
        suggestion = f"{smaller} or {larger}" if smaller else f"{larger}"
        raise FovealError(f"imgsz: {imgsz} is not a multiple of {name}'s patch size {patch} (try {suggestion})")


def check_runs_at(model: nn.Module, name: str, imgsz: int):
    """Run `model` once on an (1, 3, imgsz, imgsz) input on the meta device (shapes only: no memory, no
    arithmetic) and turn a feature map that vanishes in its downsampling into a one-line FovealError."""
    meta = {key: torch.empty_like(tensor, device="meta")
            for key, tensor in itertools.chain(model.named_parameters(), model.named_buffers())}
    training = model.training
    try:
        with torch.no_grad():
            functional_call(model.eval(), meta, (torch.empty(1, 3, imgsz, imgsz, device="meta"),))
    except (RuntimeError, ValueError, AssertionError) as e:
        # an op with no meta kernel, or one that needs values (.item()), says nothing about the size
        if not (isinstance(e, NotImplementedError) or "meta" in str(e).lower()):
            raise FovealError(f"imgsz: {imgsz} is too small for {name}: {_first_line(e)}") from None
    finally:
        model.train(training)


def _first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


for _name in torchvision.models.list_models(module=torchvision.models):
    register_model("classify", _name, family="torchvision")(functools.partial(_build, _name))
