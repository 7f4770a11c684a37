"""Sliding windows over an image too large for one pass (segment and restore predict), and a model run
over an image in overlapping tiles without seams (restore's val and predict)."""

import math

import torch
import torch.nn.functional as F

from ..errors import FovealError


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering 0..length, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def run_padded(model, low: torch.Tensor, scale: int, multiple: int = 1, size: int = 0) -> torch.Tensor:
    """model(low) for a (1, C, h, w) input padded (edge pixels repeated) to multiples of `multiple`, or to
    size x size for a fixed-size graph; the output cut back to (1, C, h * scale, w * scale)."""
    height, width = low.shape[-2:]
    target_h = size or math.ceil(height / multiple) * multiple
    target_w = size or math.ceil(width / multiple) * multiple
    if (target_h, target_w) != (height, width):
        low = F.pad(low, (0, target_w - width, 0, target_h - height), mode="replicate")
    return model(low).float()[..., :height * scale, :width * scale]


@torch.inference_mode()
def restore_image(model, low: torch.Tensor, scale: int, multiple: int = 1, tile: int = 0, margin: int = 16,
                  size: int = 0) -> torch.Tensor:
    """The restored (1, C, h * scale, w * scale) image of a (1, C, h, w) input: in one pass, or in windows of
    `tile` input pixels overlapping by 2 * margin, each keeping only what lies at least `margin` pixels
    inside it (or at the image's edge): with a margin past the model's reach the result is the one-pass
    result, without seams."""
    height, width = low.shape[-2:]
    if not tile or (height <= tile and width <= tile and not size):
        return run_padded(model, low, scale, multiple, size)
    if tile <= 2 * margin:
        raise FovealError(f"tile: {tile} must be more than twice tile_margin ({margin})")
    restored = low.new_zeros(1, low.shape[1], height * scale, width * scale, dtype=torch.float)
    step = tile - 2 * margin
    for top in window_starts(height, tile, step):
        for left in window_starts(width, tile, step):
            piece = run_padded(model, low[..., top:top + tile, left:left + tile], scale, multiple, size)
            rows, cols = piece.shape[-2] // scale, piece.shape[-1] // scale
            keep_top = 0 if top == 0 else margin
            keep_left = 0 if left == 0 else margin
            keep_bottom = rows if top + rows >= height else rows - margin
            keep_right = cols if left + cols >= width else cols - margin
            restored[..., (top + keep_top) * scale:(top + keep_bottom) * scale,
                     (left + keep_left) * scale:(left + keep_right) * scale] = \
                piece[..., keep_top * scale:keep_bottom * scale, keep_left * scale:keep_right * scale]
    return restored
