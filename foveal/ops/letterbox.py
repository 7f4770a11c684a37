"""Letterboxing: an image fitted into a square (or a stride-multiple rectangle) keeping its aspect ratio,
the rest padded (centred); masks placed the same way, and model outputs mapped back to the original.

A point p of the original lies at p * scale + pad in the letterboxed image, pad = (left, top). Sizes are
(height, width), as torch orders them.
"""

import cv2
import numpy as np
import torch
import torch.nn.functional as F

PAD_VALUE = 114  # mid-grey padding, as most YOLO pipelines use


def letterbox(image: np.ndarray, size: int, stride: int = 0) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize to fit a size x size square keeping the aspect ratio, pad the rest (centred).

    With `stride`, pad only up to multiples of it (a "rectangular" letterbox: a 4:3 image becomes
    320 x 256 instead of 320 x 320, a fifth less compute for a detector whose grid fits any such size).
    Returns (image, scale, (pad_x, pad_y)): a point p maps to p * scale + pad.
    """
    h, w = image.shape[:2]
    scale, nh, nw = fitted_size(h, w, size)
    out_h, out_w = letterbox_shape(h, w, size, stride)
    if (nh, nw) != (h, w):
        image = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    pad_x, pad_y = (out_w - nw) // 2, (out_h - nh) // 2
    out = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    out[pad_y:pad_y + nh, pad_x:pad_x + nw] = image
    return out, scale, (pad_x, pad_y)


def fitted_size(height: int, width: int, size: int) -> tuple[float, int, int]:
    """(scale, new height, new width) of an image fitted into a size x size square."""
    scale = min(size / height, size / width)
    return scale, *scaled_size(height, width, scale)


def scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    """(height, width) of an image resized by `scale`, as letterbox resizes it (at least 1 pixel each)."""
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox_shape(height: int, width: int, size: int, stride: int = 0) -> tuple[int, int]:
    """(H, W) that letterbox(image of height x width, size, stride) returns, without the pixels."""
    if not stride:
        return size, size
    _, nh, nw = fitted_size(height, width, size)
    return -(-nh // stride) * stride, -(-nw // stride) * stride


def letterbox_mask(mask: np.ndarray, size: int, scale: float, pad: tuple[int, int], fill: int) -> np.ndarray:
    """The mask (H, W) as letterbox() places its image: nearest-neighbour resize, then `fill` around it."""
    h, w = mask.shape
    nh, nw = scaled_size(h, w, scale)
    if (nh, nw) != (h, w):
        mask = cv2.resize(mask, (nw, nh), interpolation=cv2.INTER_NEAREST)
    out = np.full((size, size), fill, mask.dtype)
    out[pad[1]:pad[1] + nh, pad[0]:pad[0] + nw] = mask
    return out


def unletterbox_logits(logits: torch.Tensor, scale: float, pad, height: int, width: int) -> torch.Tensor:
    """(C, S, S) logits of a letterboxed image -> (C, height, width) logits on the original image."""
    nh, nw = scaled_size(height, width, scale)
    inside = logits[:, pad[1]:pad[1] + nh, pad[0]:pad[0] + nw]
    if (nh, nw) == (height, width):
        return inside
    return F.interpolate(inside[None].float(), size=(height, width), mode="bilinear", align_corners=False)[0]


def unletterbox_masks(masks: torch.Tensor, scale: float, pad, height: int, width: int, threshold: float):
    """(K, S, S) mask probabilities of a letterboxed image -> (K, height, width) bool on the original."""
    nh, nw = scaled_size(height, width, scale)
    inside = masks[:, int(pad[1]):int(pad[1]) + nh, int(pad[0]):int(pad[0]) + nw].float()
    if (nh, nw) != (height, width) and len(inside):
        inside = F.interpolate(inside[:, None], size=(height, width), mode="bilinear", align_corners=False)[:, 0]
    return inside > threshold
