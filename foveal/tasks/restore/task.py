"""Image restoration: denoising and super-resolution on the shared engine.

The model takes a degraded image and returns the restored one (foveal/models/restore: low-resolution in,
`scale` times larger out). Training pairs are patches of clean images degraded on the fly
(foveal/data/restore.py); val scores whole images, degraded once, by PSNR and SSIM as the papers do:
on the luma (Y) channel with `crop_border` = scale for super-resolution, on every channel for the rest.
The same val scores the classical answers on the same images: the degraded input itself, bicubic
enlargement (super-resolution) and scikit-image's non-local means (noise), so the gain in dB is measured,
not assumed. Prediction (predict.py) and evaluation restore an image with the one function
`restore_image` (ops/windows.py: tiled when asked, without seams).
"""

import warnings
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from ...config import TrainConfig, opt
from ...data.degrade import bicubic_upscale
from ...data.restore import (EMBEDDED, Degradation, Patches, WholeImages, check_sizes, collate_whole, load_restore_data,
                            reference_size, to_pixels, to_tensor)
from ...engine.contract import EvalResult, Evaluator, Task
from ...errors import FovealError
from ...metrics.restore import RestoreScores
from ...ops.windows import restore_image
from ...registry import create_model, get_model_entry
from .common import degradation, fixed_graph_size

MODES = ("train", "val", "predict", "info", "export", "benchmark")
DENOISERS = ("dncnn", "unet")  # keep the size (scale 1); the others are super-resolution models
DEFAULT_SR_SCALE = 3
DEPTH_ARGUMENT = {"dncnn": "depth", "unet": "depth", "fsrcnn": "mapping_layers", "edsr_baseline": "num_blocks"}


@dataclass
class RestoreConfig(TrainConfig):
    data: str = opt("photos", "clean images: photos (embedded), a folder, or pairs:LOW/,HIGH/")
    model: str = opt("dncnn", "architecture name (`foveal models restore` lists them)")
    imgsz: int = opt(0, "input size of export, benchmark and info (0: 256)", range="[0, inf)")
    epochs: int = opt(20, "number of training epochs")
    batch: int = opt(16, "batch size (per process when run with torchrun)")
    weight_decay: float = opt(0.0, "weight decay (not applied to biases and norm layers)")
    warmup_epochs: float = opt(0.0, "linear warm-up length in epochs (fractions allowed)")
    scale: int = opt(0, "super-resolution factor (0: 1 for dncnn and unet, 3 for the others)", range="[0, 8]")
    sigma: float = opt(-1.0, "Gaussian noise std on the 0-255 scale (-1: 25 for a denoiser without other "
                             "degradation, else 0)", range="[0, 255] or -1")
    sigma_max: float = opt(0.0, "blind denoising: each patch's sigma drawn from [sigma, sigma_max] (0: off)",
                           range="[0, 255]")
    quality: int = opt(0, "JPEG quality of the degradation (0: no JPEG)", range="[0, 100]")
    blur: float = opt(0.0, "Gaussian blur std in pixels before the rest (0: none)", range="[0, inf)")
    channels: int = opt(3, "3: colour, 1: grey (the images' luma)", (1, 3))
    patch: int = opt(48, "training patch size in pixels of the clean image (a multiple of scale)", range="[8, inf)")
    patches: int = opt(2048, "random training patches per epoch", range="[1, inf)")
    loss: str = opt("l1", "pixel loss", ("l1", "l2"))
    width: int = opt(0, "channels of the model's layers (0: the model's default)", range="[0, inf)")
    depth: int = opt(0, "dncnn: layers; unet: down-samplings (0: the model's default)", range="[0, inf)")
    crop_border: int = opt(-1, "pixels left out at each edge when scoring (-1: scale for super-resolution, else 0)",
                           range="[0, inf) or -1")
    crop: int = opt(0, "val: score the centre crop x crop of each image (0: whole images)", range="[0, inf)")
    tile: int = opt(0, "predict and val: restore in tiles of this many input pixels (0: whole images)",
                    range="[0, inf)")
    tile_margin: int = opt(16, "tiles overlap by twice this; each keeps its centre (no seams)", range="[0, inf)")
    save: bool = opt(True, "predict: write the restored images (PNG) or video")
    compare: bool = opt(False, "predict: also write input | output (| reference) side by side")
    degrade: bool = opt(False, "predict: the sources are clean: degrade them as in training first, and score "
                               "the result against them")


def model_scale(cfg) -> int:
    entry = get_model_entry(cfg.model, "restore")
    if entry.name in DENOISERS:
        return cfg.scale or 1
    return cfg.scale or DEFAULT_SR_SCALE


def model_kwargs(cfg) -> dict:
    """create_model's arguments: channels, scale, and width= / depth= in the model's own terms."""
    kwargs = {"channels": cfg.channels, "scale": model_scale(cfg)}
    if cfg.width:
        kwargs["width"] = cfg.width
    if cfg.depth:
        if cfg.model not in DEPTH_ARGUMENT:
            raise FovealError(f"depth: {cfg.model} has a fixed number of layers; depth= is for "
                              f"{', '.join(DEPTH_ARGUMENT)}")
        kwargs[DEPTH_ARGUMENT[cfg.model]] = cfg.depth
    return kwargs


class RestoreTask(Task):
    name = "restore"
    Config = RestoreConfig
    fitness = "psnr"
    epoch_columns = ("psnr", "ssim")
    curve_groups = [("loss", ["train_loss", "val_loss"]), ("PSNR dB", ["psnr", "psnr_input", "psnr_bicubic",
                                                                        "psnr_nlm"]),
                    ("learning rate", ["lr"])]
    embedded = EMBEDDED

    @classmethod
    def trained_config(cls, cfg, meta):
        """Also the channels, scale and width/depth of the weights, and their degradation unless given."""
        trained = meta.get("degradation", {})
        given = {key: getattr(cfg, key) for key in ("sigma", "sigma_max", "quality", "blur")
                 if getattr(cfg, key) != getattr(cls.Config, key)}
        kwargs = meta["model_kwargs"]
        depth = kwargs.get(DEPTH_ARGUMENT.get(meta["model"], "depth"), 0)
        return replace(super().trained_config(cfg, meta), channels=kwargs["channels"], scale=kwargs["scale"],
                       width=kwargs.get("width", 0), depth=depth, **{**trained, **given})

    def setup(self):
        cfg = self.cfg
        self.scale = model_scale(cfg)
        self.degradation = degradation(cfg, self.scale)
        if cfg.patch % self.scale:
            raise FovealError(f"patch: {cfg.patch} is not a multiple of scale {self.scale}")
        create_model(cfg.model, "restore", **self.model_kwargs())  # refuse a bad model or option before data
        self.fixed_size = fixed_graph_size(self.meta or {})
        self.check_tile()
        self.use_data(load_restore_data(cfg.data, cfg.val_fraction, cfg.strict))
        if self.data.paired and self.degradation != Degradation(self.scale):
            raise FovealError("sigma, quality, blur: paired data brings its own degraded images; leave them out")
        check_sizes(self.data, self.scale, 0 if self.meta else cfg.patch)  # patches are cut in training only
        self.imgsz = cfg.imgsz or 256
        self.crop_border = cfg.crop_border if cfg.crop_border >= 0 else (self.scale if self.scale > 1 else 0)
        self.luma = self.scale > 1 and cfg.channels == 3  # super-resolution is scored on Y, as its papers do
        self.baselines: dict[int, dict] = {}  # val image index -> baseline scores (the same every epoch)
        self.say_uncropped()

    def check_tile(self):
        """Refuse a tile too small for its margins now, not when the first large image meets it."""
        if self.tile() and self.tile() <= 2 * self.cfg.tile_margin:
            raise FovealError(f"tile: {self.tile()} must be more than twice tile_margin ({self.cfg.tile_margin})")

    def say_uncropped(self):
        """crop= larger than a val image leaves that image whole: say so rather than score it silently."""
        if not self.cfg.crop:
            return
        for split in ("val", "test"):
            whole = [r for r in self.data.splits.get(split, []) if min(reference_size(r)) < self.cfg.crop]
            if whole:
                width, height = reference_size(whole[0])
                warnings.warn(f"crop: {self.cfg.crop} is larger than {len(whole)} of the {len(self.data.splits[split])} "
                              f"{split} images (e.g. {whole[0].path or whole[0].name}, {width}x{height}): their "
                              f"centre crops are cut to the image, so they are scored (nearly) whole", stacklevel=2)

    def in_memory(self) -> bool:
        return self.cfg.data == "photos"

    def dataset(self, split, train):
        cfg, references = self.cfg, self.split_items(split)
        if train:
            return Patches(references, cfg.patches, cfg.patch, cfg.channels, self.degradation)
        return WholeImages(references, cfg.channels, self.degradation, cfg.seed, cfg.crop)

    def frames(self, split, count):
        """The degraded val images (what predict restores), as 8-bit RGB frames."""
        images = self.dataset(split, False)
        return [to_pixels(images[i][0]) for i in range(min(count, len(images)))]

    def collate(self, samples):
        return collate_whole(samples) if len(samples[0]) == 3 else torch.utils.data.default_collate(samples)

    def model_kwargs(self):
        return model_kwargs(self.cfg)

    def build_model(self):
        return create_model(self.cfg.model, "restore", **self.model_kwargs())

    def weights_meta(self):
        degraded = self.degradation
        return {**super().weights_meta(), "channels": self.cfg.channels, "degradation": {"sigma": degraded.sigma, "sigma_max": degraded.sigma_max,
                                                          "quality": degraded.quality, "blur": degraded.blur}}

    def loss(self, model, batch):
        low, high = batch
        restored = model(low).float()
        loss = F.l1_loss(restored, high) if self.cfg.loss == "l1" else F.mse_loss(restored, high)
        return loss, {"loss": loss.item()}

    def forward_eval(self, model, batch):
        return [restore_image(model, low[None], self.scale, self.multiple(), self.tile(), self.cfg.tile_margin,
                              self.fixed_size)[0] for low in batch[0]]

    def multiple(self) -> int:
        """What H and W of the input must be multiples of: the U-Net pools 2**depth times."""
        return 2 ** (self.cfg.depth or 4) if self.cfg.model == "unet" else 1

    def tile(self) -> int:
        return self.fixed_size or self.cfg.tile

    def new_evaluator(self):
        return RestoreEvaluator(self)

    def baseline_scores(self, index: int, low: torch.Tensor, high: torch.Tensor) -> dict[str, dict]:
        """{baseline: its per-image scores} for val image `index`, worked out once and kept."""
        if index not in self.baselines:
            scores = {}
            for name, image in baseline_images(low, self.degradation, self.data.paired).items():
                scorer = RestoreScores(self.crop_border)
                scorer.update(image[None].float().clamp(0, 1).to(high.device), high[None])  # as the model's
                scores[name] = scorer.per_image[0]
            self.baselines[index] = scores
        return self.baselines[index]

    def write_report(self, run_dir, history, result, model):
        from .report import write_restore_report

        write_restore_report(self, run_dir, history, result)

    def predictor(self, model, device):
        from .predict import RestorePredictor

        return RestorePredictor(self, model, device)

    @classmethod
    def model_for_info(cls, cfg):
        return cfg.model, model_kwargs(cfg), cfg.imgsz or 256


def baseline_images(low: torch.Tensor, degraded: Degradation, paired: bool) -> dict[str, torch.Tensor]:
    """The classical answers to a degraded (C, h, w) image, (C, H, W) each: bicubic enlargement for
    super-resolution (of the 8-bit input, as the papers' bicubic is), else the input itself, and for noise
    scikit-image's non-local means with its own noise estimate (skipped when scikit-image is missing)."""
    array = low.permute(1, 2, 0).float().cpu().numpy()
    if degraded.scale > 1:
        pixels = np.clip(np.rint(array * 255), 0, 255).astype(np.uint8)
        return {"bicubic": to_tensor(bicubic_upscale(pixels, degraded.scale))}
    baselines = {"input": low.float()}
    if degraded.sigma or paired:
        try:
            from skimage.restoration import denoise_nl_means, estimate_sigma
        except ImportError:
            return baselines
        sigma = float(np.mean(estimate_sigma(array, channel_axis=-1)))
        # scikit-image's recipe for its fast mode: h = 0.8 sigma, 5x5 patches searched 13x13 around
        denoised = denoise_nl_means(array, h=0.8 * sigma, sigma=sigma, fast_mode=True, patch_size=5,
                                    patch_distance=6, channel_axis=-1)
        baselines["nlm"] = to_tensor(denoised.astype(np.float32).reshape(array.shape))
    return baselines


SAMPLES = 4  # val images whose crops the report shows
SAMPLE_CROP = 96  # px of the output


class RestoreEvaluator(Evaluator):
    """The loss, PSNR and SSIM of the restored val images, and of each classical baseline on the same ones."""

    def __init__(self, task: RestoreTask):
        self.task = task
        self.scores = RestoreScores(task.crop_border)
        self.baselines: dict[str, list[dict]] = {}
        self.loss_sum, self.indices, self.samples = 0.0, [], []

    def update(self, outputs, batch):
        lows, highs, indices = batch
        for restored, low, high, index in zip(outputs, lows, highs, indices.tolist()):
            difference = restored - high
            self.loss_sum += (difference.abs() if self.task.cfg.loss == "l1" else difference ** 2).mean().item()
            self.scores.update(restored.clamp(0, 1)[None], high[None])
            for name, scores in self.task.baseline_scores(index, low, high).items():
                self.baselines.setdefault(name, []).append(scores)
            self.indices.append(index)
            if len(self.samples) < SAMPLES:
                self.samples.append(sample_crops(low, restored, high, self.task.scale))

    def compute(self) -> EvalResult:
        if not self.indices:
            raise FovealError("the evaluation split is empty")
        scored = {"psnr": "psnr_y", "ssim": "ssim_y"} if self.task.luma else {"psnr": "psnr", "ssim": "ssim"}
        references = self.task.split_items(self.task.eval_split)
        per_image = [{"image": references[index].name, **{kind: row[key] for kind, key in scored.items()},
                      **{f"{kind}_{name}": rows[i][key] for name, rows in self.baselines.items()
                         for kind, key in scored.items()}}
                     for i, (index, row) in enumerate(zip(self.indices, self.scores.per_image))]
        metrics = {"val_loss": self.loss_sum / len(self.indices)}
        for column in per_image[0]:
            if column != "image":
                metrics[column] = float(np.mean([image[column] for image in per_image]))
        for name in self.baselines:
            metrics[f"gain_{name}"] = metrics["psnr"] - metrics[f"psnr_{name}"]
        return EvalResult(metrics, {"per_image": per_image, "samples": self.samples,
                                    "scored_on": "Y" if self.task.luma else "all channels"})


def sample_crops(low, restored, high, scale: int) -> list[np.ndarray]:
    """(input enlarged by repeating pixels, output, reference) centre crops of SAMPLE_CROP px, (h, w, 3) uint8."""
    height, width = high.shape[-2:]
    size = min(SAMPLE_CROP, height, width) // scale * scale
    top, left = (height - size) // 2 // scale * scale, (width - size) // 2 // scale * scale
    enlarged = low.repeat_interleave(scale, -2).repeat_interleave(scale, -1)

    return [to_pixels(image[..., top:top + size, left:left + size]) for image in (enlarged, restored, high)]
