"""Images in, PNGs out: the one image a `foveal basics` op reads, and the PNGs it writes."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ...data.images import read_pixels, resolve_source
from ...engine.runs import new_run_dir
from ...errors import FovealError
from ...files import atomic_write

MAPPINGS = {  # how float results become 0..255 pixels
    "clip": "rounded and clipped to 0..255",
    "abs": "absolute values scaled so that the largest is 255",
    "minmax": "min..max stretched to 0..255",
}


def read_source(source: str) -> tuple[Path, np.ndarray]:
    """(path, (H, W, 3) uint8 pixels) of the one image `source` names, read as every task reads images."""
    paths = resolve_source(source)
    if len(paths) > 1:
        raise FovealError(f"source: {source} holds {len(paths)} images; basics works on one image")
    return paths[0], read_pixels(paths[0])


def to_pixels(values: torch.Tensor, mapping: str) -> np.ndarray:
    """(C, H, W) floats as (H, W, C) uint8 by a MAPPINGS rule."""
    values = values.double()
    if mapping == "abs":
        values = values.abs() * 255 / values.abs().max().clamp(min=1e-12)
    elif mapping == "minmax":
        values = (values - values.min()) * 255 / (values.max() - values.min()).clamp(min=1e-12)
    return values.round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_pngs(op: str, source: Path, images: list[np.ndarray], project: str, name: str, exist_ok: bool):
    """Write (H, W) or (H, W, 3) uint8 images into a fresh runs/basics/<op>N as <source stem>[_i].png; print where."""
    folder = new_run_dir(project, "basics", name, exist_ok, stem=op)
    for i, pixels in enumerate(images, 1):
        path = folder / (f"{source.stem}.png" if len(images) == 1 else f"{source.stem}_{i}.png")
        pixels = pixels[:, :, 0] if pixels.ndim == 3 and pixels.shape[2] == 1 else pixels
        atomic_write(path, lambda tmp: Image.fromarray(pixels).save(tmp, format="PNG"))
        print(f"saved {path}")
