"""Data for the restore task: clean reference images, and the degraded inputs made from them.

`data=` is one of
- `photos` (embedded): the photographs that ship inside scikit-image's wheel (no download), with a fixed
  train/val split (EMBEDDED_TRAIN, EMBEDDED_VAL);
- a folder of clean images: `train/` and `val/` (or `valid/`, `test/`) subfolders when it has them,
  otherwise every image below it, split by val_fraction (a fixed shuffle, so the same split every run);
- `pairs:LOW/,HIGH/`: real pairs, low-quality and clean images matched by file name (stem), split alike.

Training items are random patches (`patch` px, of the clean image) with a random flip or quarter turn,
degraded on the fly by the item's own seed (the engine seeds each (epoch, index) item); `patches` of them
make an epoch, spread evenly over the images. Val items are whole images degraded once with a seed of
their index: the same inputs every epoch and every run, so numbers compare run to run. Pairs are never
degraded: their low image is the input (cut at the matching place and scale).
"""

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from ..errors import FovealError
from .degrade import (add_gaussian_noise, augment, bicubic_downscale, crop_to_multiple, dihedral, gaussian_blur, jpeg,
                      random_patch)
from .images import CHECK_CACHE, find_unreadable, image_size, is_image, list_images, read_pixels

EMBEDDED = ("photos",)
# scikit-image's bundled photographs (skimage.data functions that read a file of the wheel)
EMBEDDED_TRAIN = ("astronaut", "brick", "coffee", "grass", "gravel", "hubble_deep_field", "immunohistochemistry",
                  "moon", "page", "rocket", "text")
EMBEDDED_VAL = ("camera", "chelsea", "coins")


@dataclass
class Reference:
    """One clean image: a file, or pixels in memory (embedded photos); `low`: its real degraded partner."""
    name: str
    path: Path | None = None
    pixels: np.ndarray | None = None
    low: Path | None = None


@dataclass
class RestoreData:
    splits: dict[str, list[Reference]]
    classes: list[str] = field(default_factory=list)  # none: the engine's contract has them
    paired: bool = False


@dataclass(frozen=True)
class Degradation:
    """What turns a clean image into the model's input, in the order of the classical pipeline: blur,
    bicubic downscale, Gaussian noise, JPEG. sigma on the 0-255 scale; sigma_max > sigma: a blind model,
    each patch's sigma drawn uniformly from [sigma, sigma_max] (val uses the middle)."""
    scale: int = 1
    sigma: float = 0.0
    sigma_max: float = 0.0
    quality: int = 0
    blur: float = 0.0

    def __call__(self, clean: np.ndarray, rng: np.random.Generator, train: bool = True) -> np.ndarray:
        """(H, W, C) uint8 -> the degraded (H / scale, W / scale, C) float32 in the 0-1 scale."""
        image = clean
        if self.blur:
            image = gaussian_blur(image, self.blur)
        if self.scale > 1:
            image = bicubic_downscale(image, self.scale)
        if self.sigma:
            sigma = self.sigma
            if self.sigma_max > self.sigma:
                sigma = rng.uniform(self.sigma, self.sigma_max) if train else (self.sigma + self.sigma_max) / 2
            noisy = add_gaussian_noise(image, sigma, rng)
            if not self.quality:
                return noisy
            image = np.clip(np.rint(noisy * 255), 0, 255).astype(np.uint8)  # JPEG encodes 8-bit pixels
        if self.quality:
            image = jpeg(image, self.quality)
        return image.astype(np.float32) / 255

    def describe(self) -> str:
        parts = [f"blur {self.blur:g}" if self.blur else "", f"bicubic x{self.scale}" if self.scale > 1 else "",
                 (f"noise {self.sigma:g}-{self.sigma_max:g}" if self.sigma_max > self.sigma else f"noise {self.sigma:g}")
                 if self.sigma else "", f"JPEG {self.quality}" if self.quality else ""]
        return ", ".join(p for p in parts if p) or "none"


def load_restore_data(data: str, val_fraction: float = 0.2, strict: bool = False) -> RestoreData:
    if not data:
        raise FovealError("data: name the clean images: photos (embedded), a folder, or pairs:LOW/,HIGH/")
    if data == "photos":
        return photos_data()
    if data.startswith("pairs:"):
        return pairs_data(data[len("pairs:"):], val_fraction, strict)
    folder = Path(data)
    if not folder.is_dir():
        raise FovealError(f"data: no such folder: {data} (restore takes photos, a folder, or pairs:LOW/,HIGH/)")
    return folder_data(folder, val_fraction, strict)


def photos_data() -> RestoreData:
    try:
        import skimage.data
    except ImportError:
        raise FovealError("data=photos: needs scikit-image: pip install 'foveal[restore]'") from None

    def reference(name):
        pixels = getattr(skimage.data, name)()
        pixels = np.repeat(pixels[..., None], 3, 2) if pixels.ndim == 2 else pixels[..., :3]
        return Reference(name, pixels=np.array(pixels))  # a writable copy: torch refuses read-only arrays

    return RestoreData({"train": [reference(n) for n in EMBEDDED_TRAIN], "val": [reference(n) for n in EMBEDDED_VAL]})


SPLIT_FOLDERS = {"train": ("train",), "val": ("val", "valid", "validation"), "test": ("test",)}


def folder_data(folder: Path, val_fraction: float, strict: bool) -> RestoreData:
    """folder/{train,val,test}/**/*.png when it has train/, else folder/**/*.png split by val_fraction."""
    splits = {"train": list_images(folder)}
    if (folder / "train").is_dir():
        splits = {}
        for name, candidates in SPLIT_FOLDERS.items():
            if sub := next((folder / c for c in candidates if (folder / c).is_dir()), None):
                splits[name] = list_images(sub)
    bad = find_unreadable([p for paths in splits.values() for p in paths], strict, folder / CHECK_CACHE)
    splits = {name: [Reference(p.stem, path=p) for p in paths if p not in bad] for name, paths in splits.items()}
    if not splits["train"]:
        raise FovealError(f"data: no readable images in {folder / 'train' if 'val' in splits else folder}")
    return RestoreData(held_out(splits, val_fraction))


def pairs_data(spec: str, val_fraction: float, strict: bool) -> RestoreData:
    """`LOW/,HIGH/`: each image of HIGH with the image of LOW that has its stem."""
    folders = [Path(part.strip()) for part in spec.split(",")]
    if len(folders) != 2:
        raise FovealError(f"data: pairs: takes two folders, LOW/,HIGH/ (got '{spec}')")
    for folder in folders:
        if not folder.is_dir():
            raise FovealError(f"data: pairs: no such folder: {folder}")
    low_folder, high_folder = folders
    lows = {p.stem: p for p in sorted(low_folder.iterdir()) if p.is_file() and is_image(p)}
    highs = {p.stem: p for p in sorted(high_folder.iterdir()) if p.is_file() and is_image(p)}
    unmatched = sorted(set(highs) ^ set(lows))
    if unmatched:
        raise FovealError(f"data: pairs: {len(unmatched)} image(s) without a partner of the same name, "
                          f"e.g. {unmatched[0]} (in {high_folder if unmatched[0] in highs else low_folder})")
    if not highs:
        raise FovealError(f"data: pairs: no images in {high_folder}")
    paths = [p for stem in highs for p in (highs[stem], lows[stem])]
    bad = find_unreadable(paths, strict, None)
    references = [Reference(stem, path=highs[stem], low=lows[stem]) for stem in highs
                  if highs[stem] not in bad and lows[stem] not in bad]
    return RestoreData(held_out({"train": references}, val_fraction), paired=True)


def reference_size(reference: Reference) -> tuple[int, int]:
    """(width, height) of a clean image, from its header (no decode) or its pixels."""
    if reference.pixels is not None:
        return reference.pixels.shape[1], reference.pixels.shape[0]
    return image_size(reference.path)


def check_sizes(data: RestoreData, scale: int, patch: int = 0):
    """Refuse, before any work: a pair whose low image is not its clean one's size / scale, and (patch > 0,
    training) a train image smaller than the patch. Headers only, so a large folder is checked in moments."""
    for split, references in data.splits.items():
        for reference in references:
            width, height = reference_size(reference)
            if reference.low:
                low, expected = image_size(reference.low), (width // scale, height // scale)
                if low != expected:
                    raise FovealError(f"data: pairs: {reference.low} is {low[0]}x{low[1]}, but {reference.path} "
                                      f"({width}x{height}) at scale {scale} needs {expected[0]}x{expected[1]}")
            if patch and split == "train" and min(width, height) < patch:
                raise FovealError(f"patch: {reference.path or reference.name} is {width}x{height}, smaller than the "
                                  f"{patch}x{patch} patch; lower patch= (or leave the image out)")


def held_out(splits: dict[str, list], val_fraction: float) -> dict[str, list]:
    """A val split taken from train (a fixed shuffle) where there is none; val_fraction 0 keeps the data whole."""
    if "val" in splits or val_fraction <= 0:
        return splits
    train = splits["train"]
    if len(train) < 2:
        raise FovealError(f"data: {len(train)} image(s): at least 2 are needed to hold one out for val")
    order = np.random.default_rng(0).permutation(len(train))
    count = min(len(train) - 1, max(1, round(val_fraction * len(train))))
    return {**splits, "train": [train[i] for i in sorted(order[count:])],
            "val": [train[i] for i in sorted(order[:count])]}


def clean_pixels(reference: Reference, channels: int) -> np.ndarray:
    """(H, W, channels) uint8: the reference's pixels, grey (ITU-R BT.601 luma, OpenCV's) for channels=1."""
    pixels = reference.pixels if reference.pixels is not None else read_pixels(reference.path)
    return to_channels(pixels, channels)


def to_channels(pixels: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1 and pixels.shape[2] == 3:
        return cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[..., None]
    return pixels


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, C) uint8 or 0-1 float -> (C, H, W) float32 in the 0-1 scale."""
    image = np.ascontiguousarray(image)
    tensor = torch.from_numpy(image if image.flags.writeable else image.copy()).permute(2, 0, 1)  # torch wants writable
    return tensor.float() / 255 if image.dtype == np.uint8 else tensor.float()


def to_pixels(image: torch.Tensor) -> np.ndarray:
    """(C, H, W) 0-1 float -> (H, W, 3) uint8 RGB (grey repeated), clipped and rounded: what is shown or saved."""
    pixels = image.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()
    return np.repeat(pixels, 3, 2) if pixels.shape[2] == 1 else pixels


CACHED_IMAGES = 64  # decoded training images a process keeps (the embedded photos: all of them)


class Patches(Dataset):
    """`count` training items: (degraded patch, clean patch) as (C, h, w) and (C, h * scale, w * scale)
    float tensors, each a random crop of image index % len(references) with a random flip or turn."""

    def __init__(self, references: list[Reference], count: int, patch: int, channels: int, degrade: Degradation):
        if not references:
            raise FovealError("data: the train split has no images")
        self.references, self.count, self.patch, self.channels, self.degrade = references, count, patch, channels, degrade
        self.cache: dict[int, tuple] = {}  # the last CACHED_IMAGES decoded, per process: patches come from
        # few images at a time only by chance, but a folder's whole decode must not sit in every worker's memory

    def __len__(self):
        return self.count

    def images(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        if index not in self.cache:
            reference = self.references[index]
            low = to_channels(read_pixels(reference.low), self.channels) if reference.low else None
            if len(self.cache) >= CACHED_IMAGES:
                self.cache.pop(next(iter(self.cache)))  # the oldest
            self.cache[index] = (clean_pixels(reference, self.channels), low)
        return self.cache[index]

    def name(self, index: int) -> str:
        reference = self.references[index % len(self.references)]
        return str(reference.path or reference.name)

    def __getitem__(self, index):
        rng = np.random.default_rng(int(torch.randint(2**62, ())))  # the engine seeded torch for this item
        clean, low = self.images(index % len(self.references))
        scale, size = self.degrade.scale, self.patch
        if low is None:
            try:
                patch = augment(random_patch(clean, size, rng, scale), rng)
            except FovealError as e:  # say which image
                raise FovealError(f"{self.name(index)}: {e}; lower patch=") from None
            return to_tensor(self.degrade(patch, rng)), to_tensor(patch)
        # a real pair: the same place in both, the low image `scale` times smaller
        clean = crop_to_multiple(clean, scale)
        check_pair(clean, low, scale, self.references[index % len(self.references)])
        small = size // scale
        top, left = rng.integers(low.shape[0] - small + 1), rng.integers(low.shape[1] - small + 1)
        variant = int(rng.integers(8))
        low_patch = dihedral(low[top:top + small, left:left + small], variant)
        high_patch = dihedral(clean[top * scale:(top + small) * scale, left * scale:(left + small) * scale], variant)
        return to_tensor(low_patch), to_tensor(high_patch)


def check_pair(clean: np.ndarray, low: np.ndarray, scale: int, reference: Reference):
    expected = (clean.shape[0] // scale, clean.shape[1] // scale)
    if low.shape[:2] != expected:
        raise FovealError(f"{reference.low}: {low.shape[1]}x{low.shape[0]}, but {reference.path} at scale {scale} "
                          f"needs {expected[1]}x{expected[0]}")


class WholeImages(Dataset):
    """Val items: (degraded image, clean image, index), each degraded once by a seed of its index; a clean
    image is cropped to a multiple of the scale (and of `multiple`, for models that need it), and to its
    centre `crop` x `crop` when crop > 0."""

    def __init__(self, references: list[Reference], channels: int, degrade: Degradation, seed: int, crop: int = 0):
        self.references, self.channels, self.degrade, self.seed, self.crop = references, channels, degrade, seed, crop

    def __len__(self):
        return len(self.references)

    def __getitem__(self, index):
        reference, scale = self.references[index], self.degrade.scale
        clean = clean_pixels(reference, self.channels)
        if self.crop:
            clean = centre_crop(clean, self.crop)
        clean = crop_to_multiple(clean, scale)
        if reference.low:
            low = to_channels(read_pixels(reference.low), self.channels)
            check_pair(clean, low, scale, reference)
            degraded = to_tensor(low)
        else:
            degraded = to_tensor(self.degrade(clean, np.random.default_rng([self.seed, index]), train=False))
        return degraded, to_tensor(clean), index


def centre_crop(image: np.ndarray, size: int) -> np.ndarray:
    height, width = image.shape[:2]
    top, left = max(0, (height - size) // 2), max(0, (width - size) // 2)
    return image[top:top + size, left:left + size]


def collate_whole(samples):
    """Whole images differ in size: lists of (C, H, W) tensors, and their indices."""
    low, high, index = zip(*samples)
    return list(low), list(high), torch.tensor(index)
