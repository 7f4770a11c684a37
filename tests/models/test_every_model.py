"""Every registered model of every task at a tiny size: built with fresh weights, a training forward and
backward (every trainable parameter gets a gradient), a safetensors round trip through foveal's checkpoint
functions (the reloaded model computes the same eval outputs), and the `info` mode's layer table.
Classifiers of more than HEAVY parameters (VGG, the large RegNets, ViTs, Swins, ConvNeXts ...) run their
forward and backward on the meta device (shapes and the autograd graph, no weight memory) and skip the
round trip: tests/models/test_models.py trains and round-trips one member of every family for real.

The per-task files test what a task's models mean (output contracts, learning, published sizes); this one
only that nothing registered is left out of the common path. No pretrained weights, no network."""

import pytest
import torch
import torch.nn.functional as F

import foveal
from foveal.engine.checkpoint import load_state, load_weights, save_weights
from foveal.inspect.info import parameters_on_meta
from foveal.registry import get_model_entry, list_models

TASKS = ("classify", "detect", "segment", "pose", "restore", "forecast")
CASES = [(task, name) for task in TASKS for name in list_models(task)]
SIZE = 32  # the input side, unless a model needs more
CLASSIFY_SIZE = {"alexnet": 64, "googlenet": 64, "inception_v3": 80, "squeezenet1_0": 64, "squeezenet1_1": 64,
                 "vit_b_16": 32, "vit_b_32": 64, "vit_l_16": 32, "vit_l_32": 64, "vit_h_14": 28,
                 "swin_t": 64, "swin_s": 64, "swin_b": 64, "swin_v2_t": 64, "swin_v2_s": 64, "swin_v2_b": 64,
                 "maxvit_t": 224}  # sizes these families accept (patches, windows, pools that must not reach 0)
RESTORE = {"dncnn": dict(depth=4, width=8), "unet": dict(width=8, depth=2), "srcnn": dict(width=8),
           "fsrcnn": dict(width=8, shrink_width=4, mapping_layers=1), "espcn": dict(width=8),
           "edsr_baseline": dict(width=8, num_blocks=2)}
FORECAST = dict(window=8, horizon=3, features=2, layers=2, hidden=8)
HEAVY = 12e6  # resnet18 and below run for real


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: a second thread only waits


def test_the_cases_are_every_registered_model():
    registered = set(list_models())
    assert {name for _, name in CASES} == registered and len(CASES) == len(set(CASES))


def size_of(task: str, name: str) -> int:
    if task == "classify":
        return CLASSIFY_SIZE.get(name, SIZE)
    if task == "pose" and get_model_entry(name, task).kind == "landmark":
        return 128  # an hourglass halves a 1/4 map four times: 2 x 2 at the bottom, BatchNorm's least in training
    return 64 if task in ("detect", "segment", "pose") else SIZE


def build(task: str, name: str, device: str = "cpu"):
    imgsz = size_of(task, name)
    if task == "restore":
        return foveal.create_model(name, task, channels=3, **RESTORE[name])
    if task == "forecast":
        return foveal.create_model(name, task, **FORECAST)
    # bounds the mask and keypoint heads' work (Keypoint R-CNN's heatmaps per detection)
    extra = {"max_det": 3} if get_model_entry(name, task).kind == "instance" or task == "pose" else {}
    if device == "meta":
        with parameters_on_meta():
            return foveal.create_model(name, task, num_classes=classes_of(task, name), imgsz=imgsz, **extra).to("meta")
    return foveal.create_model(name, task, num_classes=classes_of(task, name), imgsz=imgsz, **extra)


def classes_of(task: str, name: str) -> int:
    return 1 if get_model_entry(name, task).kind == "landmark" else 3  # a landmark model finds one object


def computes_its_losses(task: str, name: str) -> bool:
    return task in ("detect", "pose") or get_model_entry(name, task).kind == "instance"


def inputs(task: str, name: str, device: str = "cpu") -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    if task == "forecast":
        return torch.randn(2, FORECAST["window"], FORECAST["features"], generator=generator)
    size = size_of(task, name)
    # a detector's step is the slow one: one image, but SSDlite's batch norms on 1 x 1 maps need two
    count = 1 if computes_its_losses(task, name) and name != "ssdlite320_mobilenet_v3_large" else 2
    return torch.rand(count, 3, size, size, generator=generator).to(device)


def targets(count: int, size: int, masks: bool, keypoints: bool = False) -> list[dict]:
    """Two objects an image: xyxy pixel boxes, labels in [0, 3), and their box-shaped masks or 17 keypoints
    (one unlabelled)."""
    boxes = torch.tensor([[8.0, 8.0, 40.0, 40.0], [20.0, 30.0, 50.0, 60.0]])
    target = {"boxes": boxes, "labels": torch.tensor([0, 2])}
    if keypoints:
        along = torch.linspace(0, 1, 17)[None, :, None]  # joints on each box's diagonal
        points = boxes[:, None, :2] + along * (boxes[:, None, 2:] - boxes[:, None, :2])
        target["keypoints"] = torch.cat([points, torch.full((2, 17, 1), 2.0)], -1)
        target["keypoints"][0, 0] = 0
    if masks:
        target["masks"] = torch.zeros(2, size, size, dtype=torch.uint8)
        for mask, (x1, y1, x2, y2) in zip(target["masks"], boxes.int().tolist()):
            mask[y1:y2, x1:x2] = 1
    return [target] * count


def training_loss(task: str, name: str, model, x: torch.Tensor) -> torch.Tensor:
    if computes_its_losses(task, name):
        return sum(model(x, targets(len(x), x.shape[-1], masks=task == "segment", keypoints=task == "pose")).values())
    out = model(x)
    if task == "classify":
        assert out.shape == (2, 3)
        return F.cross_entropy(out, torch.tensor([0, 2], device=out.device))
    if task == "segment":
        assert out.shape == (2, 3, *x.shape[-2:])
        return F.cross_entropy(out, torch.zeros(2, *x.shape[-2:], dtype=torch.long))
    return out.square().mean()  # restore and forecast: any loss of the whole output


def eval_outputs(model, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        out = model.eval()(x)
    if isinstance(out, torch.Tensor):
        return [out]
    return [value for item in out for value in item.values()]  # detectors: a dict of tensors per image


@pytest.mark.parametrize("task,name", CASES)
def test_build_train_step_round_trip_and_info(task, name, tmp_path):
    model = build(task, name, "meta") if task == "classify" else None
    heavy = model is not None and sum(p.numel() for p in model.parameters()) > HEAVY
    device = "meta" if heavy else "cpu"
    torch.manual_seed(0)
    model = (model if heavy else build(task, name)).train()
    x = inputs(task, name, device)
    loss = training_loss(task, name, model, x)
    loss.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    if not heavy:
        assert torch.isfinite(loss), loss
        save_weights(tmp_path / "w.safetensors", model.state_dict(), {"task": task, "model": name})
        state, meta = load_weights(tmp_path / "w.safetensors")
        assert (meta["task"], meta["model"]) == (task, name)
        torch.manual_seed(1)  # other fresh weights: the file must bring back every one
        again = build(task, name)
        load_state(again, state)
        for mine, theirs in zip(eval_outputs(model, x), eval_outputs(again, x), strict=True):
            assert torch.equal(mine, theirs)

    size = FORECAST["window"] if task == "forecast" else size_of(task, name)
    if task == "restore":
        options = {k: v for k, v in RESTORE[name].items() if k in ("width", "depth")}
    else:
        options = {} if task == "forecast" else {"num_classes": classes_of(task, name)}
    info = foveal.info(task, model=name, imgsz=size, verbose=False, **options)
    assert info.total_params > 0 and info.total_macs > 0 and info.rows
