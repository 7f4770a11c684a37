"""Classification transforms, built from the config with torchvision.transforms.v2."""

import torch
from torchvision.transforms import v2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AUTO_AUGMENT = {
    "randaugment": v2.RandAugment,
    "trivialaugment": v2.TrivialAugmentWide,
    "autoaugment": v2.AutoAugment,
}


def to_model_input(mean=IMAGENET_MEAN, std=IMAGENET_STD) -> list:
    return [v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]


def train_transform(imgsz: int, hflip: float, crop_scale: float, rotate: float, color_jitter: float,
                    auto_augment: str, erasing: float, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (3, H, W) image -> normalised float (3, imgsz, imgsz), randomly augmented."""
    steps = [v2.RandomResizedCrop(imgsz, scale=(crop_scale, 1.0), antialias=True) if crop_scale < 1
             else v2.Resize((imgsz, imgsz), antialias=True)]
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(hflip))
    if rotate > 0:
        steps.append(v2.RandomRotation(rotate))
    if color_jitter > 0:
        steps.append(v2.ColorJitter(color_jitter, color_jitter, color_jitter, min(color_jitter, 0.5) / 5))
    if auto_augment:
        steps.append(AUTO_AUGMENT[auto_augment]())
    steps += to_model_input(mean, std)
    if erasing > 0:
        steps.append(v2.RandomErasing(erasing))
    return v2.Compose(steps)


def eval_transform(imgsz: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """uint8 (3, H, W) image -> normalised float (3, imgsz, imgsz), deterministic."""
    return v2.Compose([v2.Resize((imgsz, imgsz), antialias=True), *to_model_input(mean, std)])
