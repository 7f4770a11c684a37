"""The `features` mode: what a CNN's layers compute on an image, as grids of channel images.

    foveal classify features weights=best.safetensors source=img.png layers=auto
    foveal classify features model=resnet18 source=img.png              # random weights

Per image and layer, a PNG grid of up to MAX_CHANNELS channel maps, ordered by mean |activation| (the
most active first; the dead channels of a ReLU come last), each stretched to its own min-max; the
first convolution's filters as a grid (in colour when it reads RGB); and report.html with all of them,
the layer names and output shapes. layers=auto takes the end of each stage of the bottom-up feature
network (layers.feature_stage_ends: a ResNet's layer1..4, not an FPN's top-down path).
"""

from pathlib import Path

import cv2
import numpy as np
import torch

from ..engine.runs import new_run_dir
from ..errors import FovealError
from ..files import write_bytes
from ..report import Section, Table, write_report
from .layers import feature_stage_ends, first_conv, named_layers, trace_calls
from .loading import inspected_model, source_frames

MAX_CHANNELS = 64  # channel maps per layer grid (8 x 8)
COLUMNS = 8
TILE = 48  # small maps are enlarged (nearest) to about this many pixels, large ones shrunk to 3 x this
GAP = 2  # white pixels between tiles


def png_bytes(rgb: np.ndarray) -> bytes:
    """(H, W, 3) uint8 RGB or (H, W) grey -> PNG file bytes."""
    image = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb
    return cv2.imencode(".png", image)[1].tobytes()


def stretch(values: np.ndarray) -> np.ndarray:
    """Floats -> uint8 0..255 over their own min-max (a constant array gives zeros)."""
    low, high = float(values.min()), float(values.max())
    return np.zeros(values.shape, np.uint8) if high <= low else ((values - low) / (high - low) * 255).round().astype(np.uint8)


def resize_tile(tile: np.ndarray) -> np.ndarray:
    """Enlarge a small map by a whole factor (pixels stay square and crisp), shrink a big one to 3 x TILE."""
    side = max(tile.shape[:2])
    if side > 3 * TILE:
        scale = 3 * TILE / side
        return cv2.resize(tile, (max(1, round(tile.shape[1] * scale)), max(1, round(tile.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    factor = max(1, round(TILE / side))
    return np.kron(tile, np.ones((factor, factor) + (1,) * (tile.ndim - 2), np.uint8)) if factor > 1 else tile


def tile_grid(tiles: list[np.ndarray], columns: int = COLUMNS) -> np.ndarray:
    """Same-size (h, w) or (h, w, 3) uint8 tiles in rows of `columns`, GAP white pixels apart."""
    tiles = [resize_tile(t) for t in tiles]
    h, w = tiles[0].shape[:2]
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (h + GAP) - GAP, columns * (w + GAP) - GAP) + tiles[0].shape[2:], 255, np.uint8)
    for k, tile in enumerate(tiles):
        y, x = (k // columns) * (h + GAP), (k % columns) * (w + GAP)
        grid[y:y + h, x:x + w] = tile
    return grid


def channel_grid(maps: torch.Tensor) -> tuple[np.ndarray, int]:
    """(C, h, w) activations -> (grey grid of the MAX_CHANNELS most active channels, channels shown)."""
    maps = maps.float()
    order = maps.abs().mean((1, 2)).argsort(descending=True)[:MAX_CHANNELS]
    chosen = maps[order].cpu().numpy()
    return tile_grid([stretch(m) for m in chosen]), len(chosen)


def filter_grid(weight: torch.Tensor) -> np.ndarray:
    """(out, in, k, k) conv weights -> a grid of the first MAX_CHANNELS filters, each over its own
    min-max: in RGB when the layer reads 3 channels (the input's R, G, B), else the mean over its inputs."""
    weight = weight.detach().float().cpu()[:MAX_CHANNELS]
    if weight.shape[1] == 3:
        tiles = [stretch(f.permute(1, 2, 0).numpy()) for f in weight]  # (k, k, 3)
    else:
        tiles = [stretch(f.mean(0).numpy()) for f in weight]
    return tile_grid(tiles)


def capture(model, x: torch.Tensor, modules: dict) -> dict[str, torch.Tensor]:
    """{name: (C, h, w) output of the first image} of the named modules in one forward (their first call)."""
    outputs = {}

    def keep(name):
        def hook(module, inputs, output):
            outputs.setdefault(name, output[0].detach().float().clone())  # clone: a later in-place op would change it
        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in modules.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def file_name(name: str) -> str:
    return name.replace(".", "_").replace("/", "_") or "model"


def features(task_class, cfg, log=print) -> list[dict]:
    """Channel grids of cfg.layers for each image of cfg.source, the first conv's filters and report.html,
    in runs/<task>/featuresN; returns per image {file_name, layers: {name: [C, h, w]}}."""
    frames = source_frames(cfg.source, "features")
    inspected = inspected_model(task_class, cfg, "features")
    model, predictor = inspected.model, inspected.predictor
    first = next(frames, None)
    if first is None:
        return []
    x, _ = predictor.prepare(first.pixels)
    calls = trace_calls(model, lambda: model(x))
    chosen = feature_stage_ends(model, calls) if cfg.layers == "auto" else named_layers(calls, cfg.layers, "layers")
    if not chosen:  # e.g. a vision transformer: after its patch embedding, tokens, no maps
        named = ", ".join(dict.fromkeys(c.name for c in calls)) or "none"
        raise FovealError(f"layers: auto found no stage of (B, C, H, W) maps in {inspected.meta['model']}; name "
                          f"layers= among its layers with such an output: {named}")
    run_dir = new_run_dir(cfg.project, task_class.name, cfg.name, cfg.exist_ok, stem="features")
    if cfg.verbose:
        log(inspected.describe())
        log(f"layers: {', '.join(c.name for c in chosen)}")
    sections = [Section("model", [{"model": inspected.meta["model"], "weights": cfg.weights or "random",
                                   "input": "x".join(map(str, x.shape[1:])), "layers": cfg.layers}])]
    conv = first_conv(calls)
    if conv is not None:
        name = next(c.name for c in calls if c.module is conv)
        grid = filter_grid(conv.weight)
        write_bytes(run_dir / "filters.png", png_bytes(grid))
        sections.append(Section(f"filters of the first convolution, {name} {tuple(conv.weight.shape)}",
                                ["colour: the filter's weights on R, G, B, each filter over its own min-max"
                                 if conv.weight.shape[1] == 3 else "each filter's mean over its inputs", png_bytes(grid)]))
    results = []
    for frame in [first, *frames]:
        x, _ = predictor.prepare(frame.pixels)
        outputs = capture(model, x, {c.name: c.module for c in chosen})
        stem = Path(frame.name).stem
        (run_dir / stem).mkdir(exist_ok=True)
        shapes, items = {}, [png_bytes(thumbnail(frame.pixels))]
        rows = []
        for k, call in enumerate(chosen):
            maps = outputs[call.name]
            grid, shown = channel_grid(maps)
            write_bytes(run_dir / stem / f"{k:02d}_{file_name(call.name)}.png", png_bytes(grid))
            shapes[call.name] = list(maps.shape)
            rows.append([call.name, type(call.module).__name__, " x ".join(map(str, maps.shape)), shown])
            items += [f"{call.name}: {type(call.module).__name__}, output {' x '.join(map(str, maps.shape))} "
                      f"(channels x height x width); {shown} channels, the most active first", png_bytes(grid)]
        sections.append(Section(f"{frame.name}", [Table(["layer", "module", "output C x H x W", "shown"], rows), *items]))
        results.append({"file_name": frame.name, "layers": shapes})
        if cfg.verbose:
            log(f"{frame.name}: " + ", ".join(f"{n} {'x'.join(map(str, s))}" for n, s in shapes.items()))
    write_report(run_dir / "report.html", f"{task_class.name} features: {inspected.meta['model']}", sections,
                 plot_files=False)  # the images are written beside it already
    if cfg.verbose:
        log(f"results: {run_dir}")
    return results


def thumbnail(pixels: np.ndarray, side: int = 256) -> np.ndarray:
    """The image shrunk to fit side x side (never enlarged), for the report."""
    scale = min(1.0, side / max(pixels.shape[:2]))
    if scale == 1.0:
        return pixels
    return cv2.resize(pixels, (round(pixels.shape[1] * scale), round(pixels.shape[0] * scale)),
                      interpolation=cv2.INTER_AREA)
