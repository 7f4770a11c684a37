"""Finding and reading image files: the one reader of image pixels for every task, and the check
that finds unreadable files when data is indexed, so that no file fails (or is swapped) mid-training.

read_pixels turns any image PIL (or, failing that, OpenCV) can decode into (H, W, 3) uint8 RGB as it
is displayed: EXIF orientation applied, grey, 1-bit and palette images expanded, transparency
composited over white, CMYK converted, 16-bit and float images scaled by their depth or range.
"""

import glob
import io
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from ..errors import FovealError
from ..files import write_json

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".jfif", ".bmp", ".dib", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                    ".pgm", ".pbm", ".pnm", ".jp2", ".hdr", ".pfm"}
TRANSPARENT_BACKGROUND = (255, 255, 255)  # as viewers and browsers show transparent pixels
CHECK_CACHE = ".foveal-image-check.json"  # in a data set's folder: what the decode check found
CHECK_CACHE_VERSION = 1
CHECK_THREADS = min(8, os.cpu_count() or 1)  # decoders release the GIL, so threads overlap


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


def read_pixels(path) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file as displayed (see the module docstring); a one-line
    FovealError naming the file when it cannot be read."""
    try:
        return decode(path)
    except Exception as e:  # decoders raise OSError, SyntaxError, ValueError, struct.error...: all mean unreadable
        raise FovealError(f"{path}: not a readable image ({first_line(e)})") from None


def decode(path) -> np.ndarray:
    """read_pixels, raising the decoder's own exception. OpenCV reads only what PIL cannot identify
    (e.g. Radiance .hdr, float TIFF): a file PIL knows but cannot decode (truncated, damaged) is
    unreadable, where OpenCV would return half an image."""
    try:
        with Image.open(path) as image:
            ImageOps.exif_transpose(image, in_place=True)
            return pil_to_rgb(image)
    except UnidentifiedImageError:
        return opencv_to_rgb(path)


def read_image(path) -> torch.Tensor:
    """(3, H, W) uint8 RGB tensor of an image file (read_pixels); FovealError naming an unreadable file."""
    return torch.from_numpy(read_pixels(path)).permute(2, 0, 1)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 of a PIL image of any mode."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):  # PIL's own conversion clips these at 255
        grey = to_uint8(np.asarray(image))
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.has_transparency_data:  # RGBA, LA, PA, and P or RGB with a transparent colour
        background = Image.new("RGBA", image.size, TRANSPARENT_BACKGROUND)
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB":  # 1-bit, grey, palette, CMYK, YCbCr...; RGB needs no converted copy
        image = image.convert("RGB")
    return np.array(image)  # a writable copy: the transforms may draw on it


def opencv_to_rgb(path) -> np.ndarray:
    """(H, W, 3) uint8 of what cv2.imread reads unchanged (any depth, 1 to 4 channels, BGR order)."""
    if isinstance(path, io.BytesIO):  # an upload held in memory (serve): OpenCV decodes a buffer, not a file object
        array = cv2.imdecode(np.frombuffer(path.getbuffer(), np.uint8), cv2.IMREAD_UNCHANGED)
    else:
        array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise OSError("neither PIL nor OpenCV can decode it")
    array = to_uint8(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    elif array.ndim == 3:
        array = array[:, :, [2, 1, 0, 3][:array.shape[2]]]  # BGR(A) -> RGB(A)
    return pil_to_rgb(Image.fromarray(np.ascontiguousarray(array)))


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixels of any depth as uint8, scaled rather than clipped: integers within 16 bits by that depth
    (65535 -> 255; PIL opens some 16-bit files as 32-bit 'I'), floats within [0, 1] (their usual
    range) by 255, anything else (depth maps, negative values) stretched from its own min..max."""
    if array.dtype == np.uint8:
        return array
    values = np.nan_to_num(array.astype(np.float64))
    low, high = values.min(), values.max()
    if array.dtype.kind in "iu" and low >= 0 and high <= 65535:
        values = values / 65535
    elif not (array.dtype.kind == "f" and low >= 0 and high <= 1):
        values = (values - low) / max(high - low, 1e-12)
    return np.round(values * 255).astype(np.uint8)


def image_size(path) -> tuple[int, int]:
    """(width, height) of an image file as read_pixels returns it: EXIF orientations 5-8 (a quarter turn)
    swap the two. From the header when PIL knows the format; FovealError naming an unreadable file."""
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
        return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
    except UnidentifiedImageError:
        height, width = read_pixels(path).shape[:2]
        return width, height
    except Exception as e:
        raise FovealError(f"{path}: not a readable image ({first_line(e)})") from None


def first_line(error: Exception) -> str:
    return str(error).splitlines()[0] if str(error) else type(error).__name__


def check_images(paths, cache: Path | None) -> dict[Path, tuple[int, int] | str]:
    """{path: (width, height) as read_pixels gives it, or why it cannot be read} for image files.

    A real decode (PIL's verify() passes truncated files), done once per file: the results are kept in
    the JSON file `cache` (the data set's CHECK_CACHE), keyed by absolute path, file size and
    modification time, as Ultralytics caches its label checks. With cache None, or a folder that cannot
    be written to, every file is decoded every time.
    """
    entries = read_check_cache(cache) if cache else {}
    results, stale = {}, []
    for path in map(Path, paths):
        key, stamp = os.path.abspath(path), file_stamp(path)
        if stamp is None:
            results[path] = "no such file"
        elif entries.get(key, [None])[:2] == stamp:
            results[path] = entries[key][2]
        else:
            stale.append((path, key, stamp))
    if stale:
        with ThreadPoolExecutor(CHECK_THREADS) as pool:
            for (path, key, stamp), found in zip(stale, pool.map(decode_check, [path for path, _, _ in stale])):
                results[path], entries[key] = found, [*stamp, found]
        if cache:
            write_check_cache(cache, entries)
    return {path: tuple(found) if isinstance(found, list) else found for path, found in results.items()}


def decode_check(path: Path) -> list[int] | str:
    """[width, height] of the decoded image, or why it cannot be decoded (JSON-ready for the cache)."""
    try:
        height, width = decode(path).shape[:2]
        return [width, height]
    except Exception as e:  # as in read_pixels
        return first_line(e)


def file_stamp(path: Path) -> list[int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def read_check_cache(cache: Path, version: int = CHECK_CACHE_VERSION) -> dict:
    """{absolute path: [size, mtime_ns, [width, height] or problem]} (or, for another cache file in this
    form, its own entries); empty when missing, damaged or of another version."""
    try:
        content = json.loads(Path(cache).read_text(encoding="utf-8"))
        return dict(content["images"]) if content.get("version") == version else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def write_check_cache(cache: Path, entries: dict, version: int = CHECK_CACHE_VERSION):
    try:
        write_json(cache, {"version": version, "images": entries}, indent=None)
    except OSError:  # a read-only folder: check again next time rather than fail
        pass


def find_unreadable(paths: list[Path], strict: bool, cache: Path | None) -> set[Path]:
    """The paths that cannot be decoded (check_images); one counted warning names the first few, or
    with strict a FovealError names the first."""
    checked = check_images(paths, cache)
    bad = [(path, checked[path]) for path in map(Path, paths) if isinstance(checked[path], str)]
    if bad and strict:
        path, why = bad[0]
        raise FovealError(f"{path}: not a readable image ({why}); strict=false skips such files")
    if bad:
        names = ", ".join(str(p) for p, _ in bad[:5]) + (" ..." if len(bad) > 5 else "")
        warnings.warn(f"skipping {len(bad)} unreadable image(s): {names}", stacklevel=3)
    return {path for path, _ in bad}
