"""Image restorers (denoising, super-resolution) for the restore task.

Every one has the same contract: a degraded image (B, C, H, W), float in [0, 1], C = `channels`
(1 or 3), in; the restored image (B, C, H * scale, W * scale), same range but not clamped, out.
Builders take `channels: int = 3, scale: int = 1` and their own size arguments.
"""
