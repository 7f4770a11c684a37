"""What semantic and instance segmentation and their prediction share: the config, the data, and the
semantic models' input normalisation and labels (semantic.py, instance.py and predict.py import this; it
imports none of them).
"""

from dataclasses import dataclass

import torch

from ...config import TrainConfig, opt
from ...data.polyps import polyps_segmentation_data
from ...data.segment_dataset import SegmentAugment
from ...data.segmentation import shapes_segmentation_data
from ...errors import FovealError
from ...registry import get_model_entry
from ...track.config import TrackConfig

EMBEDDED = ("shapes", "polyps")
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, so pretrained encoders fit


@dataclass
class SegmentConfig(TrackConfig, TrainConfig):
    model: str = opt("unet", "architecture name (`foveal models segment` lists them)")
    imgsz: int = opt(0, "input size in pixels, a multiple of 32 (0: 128 for shapes, 256 otherwise)")
    epochs: int = opt(20, "number of training epochs")
    batch: int = opt(8, "batch size (per process when run with torchrun)")
    lr: float = opt(1e-3, "initial learning rate")
    weight_decay: float = opt(1e-4, "weight decay (not applied to biases and norm layers)")
    classes: str = opt("", "class list file (one name per line, index = line; or YAML `names:`) for mask folders")
    binary_masks: bool = opt(False, "masks are black-and-white images (e.g. 0/255 JPEGs): over 127 is class 1")
    head: str = opt("auto", "softmax over all classes, or sigmoid for 2-class data (auto: sigmoid if 2 classes)",
                    ("auto", "softmax", "sigmoid"))
    ce_weight: float = opt(1.0, "weight of the cross-entropy (or focal) term; binary cross-entropy for sigmoid",
                           range="[0, inf)")
    dice_weight: float = opt(1.0, "weight of the soft Dice term (0: cross-entropy only)", range="[0, inf)")
    focal_gamma: float = opt(0.0, "focal loss gamma: > 0 replaces cross-entropy by focal loss", range="[0, inf)")
    class_weights: str = opt("", "cross-entropy class weights: 'balanced' (from train pixel counts) or a comma list")
    width: int = opt(0, "unet/resunet: channels of the first level, doubled per level (0: model default 32)",
                     range="[0, inf)")
    depth: int = opt(0, "unet/resunet: number of down-samplings (0: model default 4)", range="[0, inf)")
    # the augmentation: its defaults are data/segment_dataset.py SegmentAugment's (written there only)
    scale: float = opt(SegmentAugment.scale, "random scale 1 +- scale", range="[0, 1)")
    translate: float = opt(SegmentAugment.translate, "random shift, fraction of the image size", range="[0, 1]")
    degrees: float = opt(SegmentAugment.degrees, "random rotation range in degrees", range="[0, 180]")
    hflip: float = opt(SegmentAugment.hflip, "horizontal flip probability", range="[0, 1]")
    vflip: float = opt(SegmentAugment.vflip, "vertical flip probability", range="[0, 1]")
    hsv_h: float = opt(SegmentAugment.hsv_h, "hue jitter (fraction)", range="[0, 1]")
    hsv_s: float = opt(SegmentAugment.hsv_s, "saturation jitter (fraction)", range="[0, 1]")
    hsv_v: float = opt(SegmentAugment.hsv_v, "value (brightness) jitter (fraction)", range="[0, 1]")
    mosaic: float = opt(SegmentAugment.mosaic, "instance models: probability of a 4-image mosaic in training",
                        range="[0, 1]")
    close_mosaic: int = opt(5, "instance models: turn mosaic off for the last N epochs", range="[0, inf)")
    threshold: float = opt(0.5, "probability over which a sigmoid head's pixel (or an instance mask pixel) is on",
                           range="[0, 1]")
    conf: float = opt(-1.0, "instance models: confidence threshold (-1: 0.001 for val, 0.25 for predict)",
                      range="[0, 1] or -1")
    iou: float = opt(0.5, "instance models: IoU threshold of non-maximum suppression", range="[0, 1]")
    max_det: int = opt(100, "instance models: most detections kept per image", range="[1, inf)")
    save_json: bool = opt(False, "val (and the end of train), instance models: also write predictions.json, COCO "
                                 "results with RLE masks and the data's own image and category ids (pycocotools "
                                 "reads them)")
    save: bool = opt(True, "predict: write overlays (images or video) and index-mask PNGs")
    save_txt: bool = opt(False, "track: also write MOTChallenge lines, mot/<video>.txt")
    alpha: float = opt(0.5, "predict: opacity of the colour overlay", range="[0, 1]")
    tile: str = opt("auto", "predict: sliding-window inference (auto: for images larger than 1.5 x imgsz)",
                    ("auto", "true", "false"))
    overlap: float = opt(0.25, "predict: overlap of sliding windows, fraction of imgsz", range="[0, 1)")
    line_width: int = opt(2, "predict: outline width in pixels", range="[1, inf)")

    def augment(self) -> SegmentAugment:
        return SegmentAugment(self.scale, self.translate, self.degrees, self.hflip, self.vflip, self.hsv_h,
                              self.hsv_s, self.hsv_v, self.mosaic)


def model_kind(name: str) -> str:
    return get_model_entry(name, "segment").kind or "semantic"


def model_kwargs(cfg: SegmentConfig) -> dict:
    """Architecture options the config sets (only our U-Nets' width and depth so far)."""
    chosen = {k: v for k, v in (("width", cfg.width), ("depth", cfg.depth)) if v}
    entry = get_model_entry(cfg.model, "segment")
    if chosen and (entry.kind == "instance" or entry.family != "foveal"):
        raise FovealError(f"{', '.join(chosen)}: only unet and resunet take these, not {cfg.model}")
    return chosen


def load_segment_data(cfg: SegmentConfig, kind: str):
    if cfg.data == "shapes":
        return shapes_segmentation_data(instances=kind == "instance")
    if cfg.data == "polyps":
        return polyps_segmentation_data(instances=kind == "instance")
    if not cfg.data:
        raise FovealError("data: name a data set: shapes, polyps, masks:IMAGES/,MASKS/, coco:ann.json,images/ "
                          "or a YOLO segmentation data.yaml")
    from ...data.formats.segmentation import load_segmentation_data
    from ...data.formats.masks import is_mask_folder

    if is_mask_folder(cfg.data):
        cfg.binary_masks = True  # Kvasir-SEG's layout: the dataset, evaluator and config.yaml read masks as 0/255

    return load_segmentation_data(cfg.data, kind, cfg.classes, cfg.strict, cfg.val_fraction, cfg.binary_masks)


def default_imgsz(cfg) -> int:
    imgsz = cfg.imgsz or (128 if cfg.data == "shapes" else 256)
    if imgsz % 32:
        raise FovealError(f"imgsz: must be a multiple of 32 for segmentation, got {imgsz}")
    return imgsz


def normalised(images: torch.Tensor) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float, channels_last (faster convolutions on CPU)."""
    mean = torch.tensor(MEAN, device=images.device).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=images.device).view(1, 3, 1, 1) * 255
    return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)


def logits_to_labels(logits: torch.Tensor, sigmoid: bool, threshold: float) -> torch.Tensor:
    """(B, C, H, W) logits -> (B, H, W) int64 class per pixel."""
    if sigmoid:
        return (logits[:, 0].float().sigmoid() > threshold).long()
    return logits.argmax(1)
