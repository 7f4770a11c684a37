"""What the restore task and its prediction share: the degradation a config asks for, and the tile size of
an exported fixed-size graph (task.py and predict.py import this; it imports neither)."""

from ...data.restore import Degradation
from ...errors import FovealError


def degradation(cfg, scale: int) -> Degradation:
    sigma = cfg.sigma
    if sigma < 0:  # the default: a denoiser removes noise; super-resolution, JPEG or blur alone otherwise
        sigma = 25.0 if scale == 1 and not cfg.quality and not cfg.blur else 0.0
    if cfg.sigma_max and cfg.sigma_max <= sigma:
        raise FovealError(f"sigma_max: {cfg.sigma_max:g} must be above sigma ({sigma:g}) for blind denoising")
    return Degradation(scale, sigma, cfg.sigma_max, cfg.quality, cfg.blur)


def fixed_graph_size(meta: dict) -> int:
    """The side of an exported fixed-size graph (images go through it in tiles of that size), else 0."""
    onnx = meta.get("onnx")
    return meta["imgsz"] if onnx and not onnx.get("dynamic") else 0
