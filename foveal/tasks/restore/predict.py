"""Restoring images, folders, globs and videos at full resolution: a PNG per image (lossless, as a
restored image must be), or a video; compare=true adds input | output (| reference) side by side, and
degrade=true treats the sources as clean references, degraded as in training and scored."""

import numpy as np
import torch
from PIL import Image

from ...data.restore import to_channels, to_pixels, to_tensor
from ...data.stream import frame_stem
from ...engine.contract import Predictor
from ...files import atomic_write
from ...metrics.restore import psnr, ssim
from ...ops.windows import restore_image
from ...report.draw import labelled, repeat_pixels
from .common import degradation, fixed_graph_size


class RestorePredictor(Predictor):
    def __init__(self, task, model, device):
        super().__init__(task, model, device)
        self.task = task  # predict does not set the task up (no data): what val's setup works out, from the weights
        task.scale, task.fixed_size = self.meta["model_kwargs"]["scale"], fixed_graph_size(self.meta)
        task.check_tile()  # before the run folder is made
        self.degradation = degradation(self.cfg, task.scale)
        self.border = self.cfg.crop_border if self.cfg.crop_border >= 0 else (task.scale if task.scale > 1 else 0)

    @torch.inference_mode()
    def infer(self, pixels):
        task, cfg = self.task, self.cfg
        with self.phase("preprocess"):
            clean = to_channels(pixels, cfg.channels)
            low = self.degradation(clean, np.random.default_rng(cfg.seed), train=False) if cfg.degrade else clean
            low = to_tensor(low)[None].to(self.device)
        with self.phase("inference"):
            restored = restore_image(self.model, low, task.scale, task.multiple(), task.tile(), cfg.tile_margin,
                                     task.fixed_size)
        with self.phase("postprocess"):
            return (to_pixels(low[0]), to_pixels(restored[0]), clean if cfg.degrade else None)

    def annotate(self, frame, output):
        low, restored, clean = output
        entry = {"path": frame.name, "frame": frame.index, "width": restored.shape[1], "height": restored.shape[0]}
        if clean is not None:  # scored as val scores (crop_border, Y for super-resolution)
            pred, target = to_tensor(restored[..., :clean.shape[2]])[None], to_tensor(crop_like(clean, restored))[None]
            luma = self.task.scale > 1 and clean.shape[2] == 3
            entry.update(psnr=round(psnr(pred, target, self.border, luma).item(), 4),
                         ssim=round(ssim(pred, target, self.border, luma).item(), 6))
        self.results.append(entry)
        image = self.draw(frame, output, entry.get("psnr"))
        summary = f"{restored.shape[1]}x{restored.shape[0]}" + (f", {entry['psnr']:.2f} dB" if "psnr" in entry else "")
        if frame.index is None:  # an image: a PNG here (run_stream would write a lossy JPEG)
            if self.cfg.save:
                path = self.run_dir / f"{frame_stem(frame)}.png"
                atomic_write(path, lambda tmp: Image.fromarray(image).save(tmp, format="PNG"))
            return None, summary
        return image, summary

    def draw(self, frame, output, psnr: float | None = None):
        low, restored, clean = output
        return side_by_side(low, restored, clean, self.task.scale, psnr) if self.cfg.compare else restored

    def fields(self, frame, output):
        return {"restored": output[1]}

    def finish(self):
        return f"{len(self.results)} restored"


def crop_like(clean: np.ndarray, restored: np.ndarray) -> np.ndarray:
    return clean[:restored.shape[0], :restored.shape[1]]


def side_by_side(low: np.ndarray, restored: np.ndarray, clean, scale: int, psnr_db: float | None = None) -> np.ndarray:
    """input (enlarged by repeating pixels) | output | reference (when there is one), one image, each part
    named in a strip above it (the output with its PSNR against the reference)."""
    enlarged = repeat_pixels(low, scale)[:restored.shape[0], :restored.shape[1]]
    parts = [enlarged, restored]
    if clean is not None:
        reference = crop_like(clean, restored)
        parts.append(np.repeat(reference, 3 // reference.shape[2], 2))  # grey shown as RGB, as the others
    height = max(p.shape[0] for p in parts)
    names = [["input"], ["output"] + ([f"PSNR {psnr_db:.2f} dB"] if psnr_db is not None else []), ["reference"]]
    rows = max(len(lines) for lines in names[:len(parts)])
    return np.concatenate([labelled(np.pad(p, ((0, height - p.shape[0]), (0, 0), (0, 0))), lines, rows)
                           for p, lines in zip(parts, names)], 1)
