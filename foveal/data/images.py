"""Finding and reading image files, with corrupt files reported by name instead of crashing a worker."""

import glob
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import FovealError

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def list_images(folder: Path) -> list[Path]:
    """Image files below `folder`, recursively, in a stable (sorted) order."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and is_image(p))


def resolve_source(source: str) -> list[Path]:
    """An image file, a folder of images, or a glob pattern, as a sorted list of image paths."""
    if not source:
        raise FovealError("source: name an image, a folder or a glob, e.g. source=img.png")
    path = Path(source)
    if path.is_dir():
        paths = list_images(path)
    elif path.is_file():
        paths = [path]
    elif any(c in source for c in "*?["):
        paths = sorted(Path(p) for p in glob.glob(source, recursive=True) if is_image(Path(p)))
    else:
        raise FovealError(f"source: no such file or folder: {source}")
    if not paths:
        raise FovealError(f"source: no images found in {source}")
    return paths


def read_image(path: Path) -> torch.Tensor:
    """(3, H, W) uint8 RGB tensor; raises OSError/UnidentifiedImageError for unreadable files."""
    with Image.open(path) as img:
        array = np.asarray(img.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def image_problem(path: Path) -> str | None:
    """Why `path` can't be read as an image, or None when its header and data check out."""
    try:
        with Image.open(path) as img:
            img.verify()
        return None
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__


def drop_unreadable(paths: list[Path], strict: bool) -> list[int]:
    """Indices of the readable paths; warns once naming the others (or raises when strict)."""
    bad = [(i, p, why) for i, p in enumerate(paths) for why in [image_problem(p)] if why]
    if bad and strict:
        _, path, why = bad[0]
        raise FovealError(f"{path}: not a readable image ({why}); strict=false skips such files")
    if bad:
        names = ", ".join(str(p) for _, p, _ in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipping {len(bad)} unreadable image(s): {names}", stacklevel=2)
    bad_indices = {i for i, _, _ in bad}
    return [i for i in range(len(paths)) if i not in bad_indices]
