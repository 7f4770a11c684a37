"""Degradations for the restore task, and the crops and flips that go with them.

Every function takes an (H, W, C) uint8 image, C = 1 or 3, as the data readers give; the crops return
views of it, the others new arrays. Those that draw random numbers take a numpy Generator, so a seed
fixes the result.

Return types follow the papers' protocols:
- add_gaussian_noise returns float32 in the 0-1 scale, unclipped and unquantised: the DnCNN protocol
  adds N(0, sigma / 255) to the [0, 1] float image and feeds that straight to the network.
- the resizes, jpeg and gaussian_blur return uint8, as the papers' degraded images are saved as PNGs
  (MATLAB's imresize on uint8 rounds and clips to uint8 too); the bicubic baseline is scored on it.

For super-resolution, cut the high-resolution patch first (random_patch, with a size that is a multiple
of the scale), augment it, then downscale it: the low-resolution patch then matches the high one
exactly, and no coordinates need scaling.
"""

import io

import cv2
import numpy as np
from PIL import Image

from ..errors import FovealError


def _to_pil(image: np.ndarray) -> Image.Image:
    """(H, W, 1) or (H, W, 3) uint8 -> an "L" or "RGB" PIL image."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3):
        raise FovealError(f"expected an (H, W, 1) or (H, W, 3) uint8 image, got {image.dtype} {image.shape}")
    return Image.fromarray(image[..., 0] if image.shape[2] == 1 else image)


def _from_pil(image: Image.Image) -> np.ndarray:
    """An "L" or "RGB" PIL image -> (H, W, C) uint8."""
    pixels = np.asarray(image)
    return pixels[..., None] if pixels.ndim == 2 else pixels


def add_gaussian_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """image / 255 plus white Gaussian noise of std sigma / 255 (sigma on the 0-255 scale, e.g. 15, 25, 50):
    (H, W, C) float32, neither clipped to [0, 1] nor rounded."""
    noise = rng.normal(0.0, sigma / 255, image.shape)
    return (image / 255 + noise).astype(np.float32)


def crop_to_multiple(image: np.ndarray, scale: int) -> np.ndarray:
    """The top-left (H - H % scale, W - W % scale) of the image, as MATLAB's modcrop: the high-resolution
    reference that a scale-times smaller image maps back onto exactly."""
    height, width = image.shape[:2]
    if height < scale or width < scale:
        raise FovealError(f"a {height}x{width} image is smaller than the scale {scale}")
    return image[: height - height % scale, : width - width % scale]


def bicubic_downscale(image: np.ndarray, scale: int) -> np.ndarray:
    """crop_to_multiple(image, scale) shrunk `scale` times with PIL's bicubic (a = -0.5), which widens its
    kernel when shrinking (antialiasing) as MATLAB's imresize does: (H // scale, W // scale, C) uint8.
    The two differ by a few tenths of a dB; results name PIL."""
    image = crop_to_multiple(image, scale)
    height, width = image.shape[:2]
    return _from_pil(_to_pil(image).resize((width // scale, height // scale), Image.Resampling.BICUBIC))


def bicubic_upscale(image: np.ndarray, scale: int) -> np.ndarray:
    """The bicubic baseline: PIL bicubic enlargement by `scale`, (H * scale, W * scale, C) uint8, rounded
    as the papers' MATLAB imresize on uint8 images is."""
    height, width = image.shape[:2]
    return _from_pil(_to_pil(image).resize((width * scale, height * scale), Image.Resampling.BICUBIC))


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """The image after a JPEG encode and decode in memory at `quality` (1-95; PIL's defaults otherwise,
    4:2:0 chroma subsampling for RGB): (H, W, C) uint8."""
    buffer = io.BytesIO()
    _to_pil(image).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return _from_pil(Image.open(buffer).convert("L" if image.shape[2] == 1 else "RGB"))


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """cv2.GaussianBlur with std `sigma` pixels (kernel size chosen by OpenCV, reflected border): (H, W, C) uint8."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return blurred.reshape(image.shape)  # OpenCV drops a single channel's axis


def random_patch(image: np.ndarray, size: int, rng: np.random.Generator, scale: int = 1) -> np.ndarray:
    """A (size, size, C) crop (a view) at a random place. For super-resolution this is the high-resolution patch,
    degraded afterwards, so `size` must be a multiple of `scale` (the low-resolution patch is size // scale)."""
    if size % scale:
        raise FovealError(f"patch size {size} is not a multiple of the scale {scale}")
    height, width = image.shape[:2]
    if height < size or width < size:
        raise FovealError(f"a {height}x{width} image is smaller than the {size}x{size} patch")
    top, left = rng.integers(height - size + 1), rng.integers(width - size + 1)
    return image[top: top + size, left: left + size]


def dihedral(image: np.ndarray, variant: int) -> np.ndarray:
    """One of the square's 8 symmetries: rotated variant % 4 quarter turns, then mirrored if variant >= 4.
    Applying the same variant to a low- and a high-resolution image keeps them a pair."""
    turned = np.rot90(image, variant % 4, axes=(0, 1))
    return np.ascontiguousarray(turned[:, ::-1] if variant >= 4 else turned)


def augment(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random one of the 8 flips and quarter turns (EDSR's and DnCNN's augmentation), equally likely."""
    return dihedral(image, int(rng.integers(8)))
