"""The `explain` mode: where in the image the evidence for a prediction lies, as a heatmap.

    foveal classify explain weights=best.safetensors source=img.png method=gradcam target=auto
    foveal detect explain weights=best.safetensors source=scenes/ target=0     # the best detection
    foveal segment explain weights=best.safetensors source=img.png target=square

Methods: gradcam, gradcam++, scorecam and eigencam from pytorch_grad_cam (the inspect extra), on the
target layer's activations; saliency: max over colour channels of |d score / d input pixel| (no extra
needed). What is explained (the target) is the task's choice: inspect/targets.py. target_layer=auto
is the last stage of the bottom-up feature network (layers.auto_target_layer): a classifier's last conv
stage before global pooling (ResNet: layer4), a detector's backbone (YOLO: backbone.stages.3, stride 32;
torchvision: backbone.body.layer4, whose features reach every FPN level), a segmenter's encoder (U-Net:
encoder.<depth>, torchvision: backbone.layer4). eigencam shows the activations' first principal
component: the same map whatever the target.

Per image: <stem>.png (the heatmap over the image at its size, a colour bar beside it; for detect the
explained box drawn too) and
cams/<stem>.npy (the (H, W) float32 map in [0, 1] on the image's own pixels); explain.json and
report.html (image, overlay, target and score) for all. The image is prepared by the task's Predictor,
as predict prepares it (a segmenter's one letterboxed pass: explain does not tile).
"""

import contextlib
import io
from pathlib import Path

import cv2
import numpy as np
import torch

from ..engine.runs import new_run_dir
from ..errors import FovealError
from ..files import atomic_write, write_bytes, write_json
from ..report import Section, write_report
from ..report.draw import draw_boxes
from ..report.plots import with_colour_bar
from .features import png_bytes, thumbnail
from .layers import auto_target_layer, named_layers, trace_calls
from .loading import inspected_model, source_frames

CAM_METHODS = {"gradcam": "GradCAM", "gradcam++": "GradCAMPlusPlus", "scorecam": "ScoreCAM", "eigencam": "EigenCAM"}
HEAT_WEIGHT = 0.5  # share of the heatmap in an overlay


def cam_class(method: str):
    """The pytorch_grad_cam class of `method` (None for saliency), or one line saying how to install it."""
    if method == "saliency":
        return None
    try:
        import pytorch_grad_cam
    except ImportError:
        raise FovealError(f"method: {method} needs the inspect extra: pip install 'foveal[inspect]' "
                          "(method=saliency needs nothing more)") from None
    return getattr(pytorch_grad_cam, CAM_METHODS[method])


def input_saliency(target, image: torch.Tensor) -> np.ndarray:
    """(h, w) max over colour channels of |d score / d pixel| (Simonyan et al. 2014), scaled to [0, 1]."""
    image = image.detach().clone().requires_grad_(True)
    score = target.score_of(target.module(image)[0])
    (gradient,) = torch.autograd.grad(score, image, allow_unused=True)
    if gradient is None:
        return np.zeros(image.shape[-2:], np.float32)
    saliency = gradient.abs().amax(1)[0].float().cpu().numpy()
    return saliency / saliency.max() if saliency.max() > 0 else saliency


def class_activation_map(cam_type, target, layers: list, image: torch.Tensor) -> np.ndarray:
    """(h, w) CAM in [0, 1] of `target` on the activations of `layers` (modules of target.module)."""
    cam = cam_type(model=target.module, target_layers=layers)
    try:
        with contextlib.redirect_stderr(io.StringIO()):  # Score-CAM draws a progress bar per image
            return cam(input_tensor=image, targets=[target.score_of])[0]
    finally:
        cam.activations_and_grads.release()
        target.module.zero_grad(set_to_none=True)


def to_frame(cam: np.ndarray, placement) -> np.ndarray:
    """An (h, w) map on the model input -> (H, W) float32 on the frame (the padding cut off, resized),
    scaled so its maximum is 1 (0 stays 0: no evidence)."""
    left, top = int(placement.pad[0]), int(placement.pad[1])
    nh, nw = max(1, round(placement.height * placement.scale_y)), max(1, round(placement.width * placement.scale_x))
    inside = np.ascontiguousarray(cam[top:top + nh, left:left + nw], np.float32)
    frame = np.clip(cv2.resize(inside, (placement.width, placement.height), interpolation=cv2.INTER_LINEAR), 0, None)
    return frame / frame.max() if frame.max() > 0 else frame


def inside_mask(image: torch.Tensor, placement) -> torch.Tensor:
    """(h, w) bool: the input pixels that show the frame (True), not the letterbox's padding."""
    inside = torch.zeros(image.shape[-2:], dtype=torch.bool)
    left, top = int(placement.pad[0]), int(placement.pad[1])
    nh, nw = max(1, round(placement.height * placement.scale_y)), max(1, round(placement.width * placement.scale_x))
    inside[top:top + nh, left:left + nw] = True
    return inside


def jet(levels: np.ndarray) -> np.ndarray:
    """uint8 levels -> their RGB colours in OpenCV's JET (blue 0: no evidence, red 255: most)."""
    return cv2.cvtColor(cv2.applyColorMap(levels.astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)


def overlay(pixels: np.ndarray, cam: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB with the (H, W) [0, 1] map drawn over it in the JET colours (red: most evidence)."""
    heat = jet((cam * 255).round())
    return (HEAT_WEIGHT * heat + (1 - HEAT_WEIGHT) * pixels).round().astype(np.uint8)


def heatmap_png(drawn: np.ndarray) -> bytes:
    """The overlay at the image's own size, with the colour bar that reads it (its colours half-blended)."""
    colours = jet(np.arange(256)[:, None])[:, 0]
    blended = HEAT_WEIGHT * colours + (1 - HEAT_WEIGHT) * 255  # as over a white pixel
    return png_bytes(with_colour_bar(drawn, blended, "evidence", {0: "none", 0.5: "", 1: "most"}))


def layer_words(call) -> str:
    """'layer 5: 64 channels of 8x8' (the layer's output per image), not '5 64x8x8'."""
    shape = call.shape[1:]
    size = f"{shape[0]} channels of {shape[1]}x{shape[2]}" if len(shape) == 3 else "x".join(map(str, shape))
    return f"layer {call.name}: {size}"


def frame_box(box: list[float], placement) -> np.ndarray:
    """An xyxy box on the model input -> on the frame."""
    x1, y1, x2, y2 = box
    (px, py), sx, sy = placement.pad, placement.scale_x, placement.scale_y
    return np.array([[(x1 - px) / sx, (y1 - py) / sy, (x2 - px) / sx, (y2 - py) / sy]], np.float32)


def save_array(path: Path, array: np.ndarray):
    def write(tmp):
        with open(tmp, "wb") as file:  # a file object: np.save would add .npy to the temporary name
            np.save(file, array)

    atomic_write(path, write)


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 4) -> np.ndarray:
    return np.hstack([left, np.full((left.shape[0], gap, 3), 255, np.uint8), right])


def explain(task_class, cfg, log=print) -> list[dict]:
    """A heatmap of cfg.method for cfg.target on each image of cfg.source, in runs/<task>/explainN;
    returns per image {file_name, target, score, method, layer, cam: (H, W) float32 in [0, 1]}."""
    frames = source_frames(cfg.source, "explain")
    cam_type = cam_class(cfg.method)
    inspected = inspected_model(task_class, cfg, "explain")
    task, model, predictor = inspected.task, inspected.model, inspected.predictor
    layers, run_dir, results, sections = None, None, [], []
    for frame in frames:
        image, placement = predictor.prepare(frame.pixels)
        try:
            target = task.explain_target(model, image, inside_mask(image, placement), cfg.target, inspected.classes)
        except FovealError as e:
            raise FovealError(f"{e} ({frame.name})") from None
        if layers is None:  # from the first image: the layer names and shapes do not depend on it
            calls = trace_calls(model, lambda: model(image))
            chosen = [auto_target_layer(model, calls)] if cfg.target_layer == "auto" else \
                named_layers(calls, cfg.target_layer, "target_layer")
            layers = [c.module for c in chosen]
            layer_text = ", ".join(f"{c.name} {'x'.join(map(str, c.shape[1:]))}" for c in chosen)
            run_dir = new_run_dir(cfg.project, task_class.name, cfg.name, cfg.exist_ok, stem="explain")
            (run_dir / "cams").mkdir(exist_ok=True)
            if cfg.verbose:
                log(inspected.describe())
                passes = f" ({sum(c.shape[1] for c in chosen)} model runs per image)" if cfg.method == "scorecam" else ""
                on = "the input pixels" if cam_type is None else "; ".join(layer_words(c) for c in chosen)
                log(f"{cfg.method} on {on}{passes}")
        if target is None:
            sections.append(Section(frame.name, ["no detection above conf: nothing to explain (lower conf= to see weaker ones)"]))
            if cfg.verbose:
                log(f"{frame.name}: no detection above conf={model.conf:g}, nothing to explain")
            continue
        cam = input_saliency(target, image) if cam_type is None else class_activation_map(cam_type, target, layers, image)
        cam = to_frame(cam, placement)
        drawn = overlay(frame.pixels, cam)
        if target.box:
            drawn = draw_boxes(drawn, frame_box(target.box, placement), [0], [target.name], colour=(255, 255, 255),
                               line_width=1, captions=False)
        stem = Path(frame.name).stem
        write_bytes(run_dir / f"{stem}.png", heatmap_png(drawn))
        save_array(run_dir / "cams" / f"{stem}.npy", cam)
        result = {"file_name": frame.name, "target": target.name, "score": round(target.score, 5), "method": cfg.method,
                  "layer": "input" if cam_type is None else layer_text}
        results.append({**result, "cam": cam})
        sections.append(Section(f"{frame.name}: {target.name}, score {target.score:.3f}",
                                [png_bytes(side_by_side(thumbnail(frame.pixels), thumbnail(drawn)))]))
        quiet = "" if cam.max() > 0 else " (the map is zero: no positive evidence on this layer)"
        if cfg.verbose:
            log(f"{frame.name}: {target.name}, score {target.score:.3f}{quiet}")
    if run_dir is None:
        raise FovealError(f"source: no readable image in {cfg.source}")
    write_json(run_dir / "explain.json", [{k: v for k, v in r.items() if k != "cam"} for r in results])
    about = {"model": inspected.meta["model"], "weights": cfg.weights or "random", "method": cfg.method,
             "layer": "input gradient" if cam_type is None else layer_text, "target": cfg.target}
    write_report(run_dir / "report.html", f"{task_class.name} explain: {cfg.method}",
                 [Section("settings", [about, "left: the image; right: the heatmap over it (red: most evidence)"]),
                  *sections], plot_files=False)  # the heatmaps are written beside it already
    if cfg.verbose:
        log(f"results: {run_dir}")
    return results
