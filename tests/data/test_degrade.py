"""Degradations: the noise's statistics and seeding, resize sizes and what resizing keeps or loses,
JPEG strength, and the 8 flips and turns."""

import numpy as np
import pytest

from foveal.data.degrade import (add_gaussian_noise, augment, bicubic_downscale, bicubic_upscale, crop_to_multiple,
                                 dihedral, gaussian_blur, jpeg, random_patch)
from foveal.errors import FovealError


def smooth_image(height: int, width: int, channels: int = 3) -> np.ndarray:
    """(H, W, C) uint8 of slow gradients and waves, different per channel."""
    ys, xs = np.mgrid[0:height, 0:width] / max(height, width)
    planes = [128 + 60 * np.sin(2 * np.pi * (1 + c) * xs) * np.cos(2 * np.pi * ys) + 40 * (xs - ys)
              for c in range(channels)]
    return np.clip(np.stack(planes, -1).round(), 0, 255).astype(np.uint8)


def checkerboard(size: int) -> np.ndarray:
    """(size, size, 1) uint8 of alternating 0 and 255 pixels: all detail, nothing a smaller image can keep."""
    return (255 * (np.indices((size, size)).sum(0) % 2)).astype(np.uint8)[..., None]


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def test_noise_has_the_asked_std_and_zero_mean():
    image = np.full((512, 512, 3), 128, np.uint8)
    noisy = add_gaussian_noise(image, 25, np.random.default_rng(0))
    assert noisy.dtype == np.float32 and noisy.shape == image.shape
    noise = noisy.astype(np.float64) - 128 / 255
    assert abs(noise.mean()) < 1e-3 and noise.std() * 255 == pytest.approx(25, rel=0.01)


def test_noise_is_neither_clipped_nor_quantised():
    noisy = add_gaussian_noise(np.zeros((64, 64, 1), np.uint8), 50, np.random.default_rng(0))
    assert noisy.min() < 0  # black pixels go below 0
    assert not np.allclose(noisy * 255, np.round(noisy * 255))


def test_noise_is_reproducible_with_a_seed():
    image = smooth_image(32, 32)
    same = [add_gaussian_noise(image, 15, np.random.default_rng(7)) for _ in range(2)]
    other = add_gaussian_noise(image, 15, np.random.default_rng(8))
    assert np.array_equal(*same) and not np.array_equal(same[0], other)


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 3])
def test_downscale_crops_to_a_multiple_then_shrinks(scale, channels):
    image = smooth_image(49, 38, channels)  # neither side a multiple of 2, 3 or 4 (49 = 7 * 7, 38 = 2 * 19)
    reference = crop_to_multiple(image, scale)
    assert reference.shape == (49 - 49 % scale, 38 - 38 % scale, channels)
    assert np.array_equal(reference, image[: reference.shape[0], : reference.shape[1]])  # the top-left
    small = bicubic_downscale(image, scale)
    assert small.shape == (49 // scale, 38 // scale, channels) and small.dtype == np.uint8
    big = bicubic_upscale(small, scale)
    assert big.shape == reference.shape and big.dtype == np.uint8


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_then_upscale_keeps_a_smooth_image_and_loses_a_checkerboard(scale):
    smooth = crop_to_multiple(smooth_image(96, 96), scale)
    assert mean_abs_difference(bicubic_upscale(bicubic_downscale(smooth, scale), scale), smooth) < 1.0  # of 255
    board = checkerboard(96)
    small = bicubic_downscale(board, scale)
    assert small.std() < 20  # antialiased: a flat grey, not a sampled pattern (the board's std is 127.5)
    assert mean_abs_difference(bicubic_upscale(small, scale), board) > 100


def test_jpeg_at_low_quality_differs_more():
    image = smooth_image(64, 64) // 2 + checkerboard(64) // 2  # some detail for JPEG to drop
    low, high = jpeg(image, 10), jpeg(image, 95)
    assert low.shape == high.shape == image.shape and low.dtype == np.uint8
    assert mean_abs_difference(low, image) > 3 * mean_abs_difference(high, image)
    assert jpeg(image[..., :1], 50).shape == (64, 64, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_gaussian_blur_smooths_and_keeps_the_shape(channels):
    board = np.repeat(checkerboard(34), channels, axis=2)[1:-1, 1:-1]  # a view, as a crop gives
    blurred = gaussian_blur(board, 2.0)
    assert blurred.shape == board.shape and blurred.dtype == np.uint8
    assert blurred.std() < 5 and abs(blurred.mean() - 127.5) < 2
    assert np.array_equal(gaussian_blur(board, 2.0), blurred)


def test_random_patch_is_a_seeded_crop_of_a_multiple_of_the_scale():
    rows, cols = np.indices((40, 50))
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)  # each pixel holds its place
    patches = [random_patch(image, 24, np.random.default_rng(seed), scale=4) for seed in range(8)]
    for patch in patches:
        top, left = patch[0, 0, :2]
        assert patch.shape == (24, 24, 3) and np.array_equal(patch, image[top: top + 24, left: left + 24])
    assert np.array_equal(patches[3], random_patch(image, 24, np.random.default_rng(3), scale=4))
    assert len({tuple(patch[0, 0]) for patch in patches}) > 1  # seeds choose different places
    with pytest.raises(FovealError, match="multiple of the scale"):
        random_patch(image, 25, np.random.default_rng(0), scale=2)
    with pytest.raises(FovealError, match="smaller than"):
        random_patch(image, 48, np.random.default_rng(0))


def test_augment_draws_all_8_variants_and_keeps_the_pixels():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)  # no symmetry: every variant differs
    variants = {dihedral(image, v).tobytes() + bytes(dihedral(image, v).shape) for v in range(8)}
    assert len(variants) == 8
    drawn = [augment(image, np.random.default_rng(seed)) for seed in range(64)]
    assert {d.tobytes() + bytes(d.shape) for d in drawn} == variants
    for d in drawn:
        assert sorted(d.reshape(-1, 3).tolist()) == sorted(image.reshape(-1, 3).tolist())  # same pixels
        assert d.flags.c_contiguous


def test_dihedral_variants_are_the_rotations_and_their_mirrors():
    image = smooth_image(5, 7)
    for turns in range(4):
        assert np.array_equal(dihedral(image, turns), np.rot90(image, turns))
        assert np.array_equal(dihedral(image, turns + 4), np.rot90(image, turns)[:, ::-1])
