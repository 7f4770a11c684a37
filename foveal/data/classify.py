"""Classification data: embedded sets (digits, shapes), ImageFolder layouts and `path,label` CSVs.

Every source becomes a `LabelledImages` per split: labels plus a way to read image i as a
(3, H, W) uint8 tensor. Transforms are applied on top by `Transformed`, so the report can show
the raw images and the engine sees normalised tensors.
"""

import csv
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ..errors import FovealError
from .images import drop_unreadable, is_image, list_images, read_image

EMBEDDED = ("digits", "shapes")


class LabelledImages:
    """Images with class indices: in memory (uint8 (N, 3, H, W)) or as files read on demand."""

    def __init__(self, labels, images: torch.Tensor | None = None, paths: list[Path] | None = None,
                 strict: bool = False):
        self.labels = [int(x) for x in labels]
        self.images, self.paths, self.strict = images, paths, strict

    @property
    def in_memory(self) -> bool:
        return self.images is not None

    def __len__(self):
        return len(self.labels)

    def name(self, i: int) -> str:
        return str(self.paths[i]) if self.paths else f"#{i}"

    def load(self, i: int) -> torch.Tensor:
        if self.in_memory:
            return self.images[i]
        try:
            return read_image(self.paths[i])
        except Exception as e:  # a file that passed the header check but fails to decode
            if self.strict:
                raise FovealError(f"{self.paths[i]}: not a readable image ({e})") from None
            warnings.warn(f"skipping unreadable image {self.paths[i]}: {e}")
            return self.load((i + 1) % len(self))

    def subset(self, indices) -> "LabelledImages":
        indices = list(indices)
        labels = [self.labels[i] for i in indices]
        if self.in_memory:
            return LabelledImages(labels, images=self.images[indices])
        return LabelledImages(labels, paths=[self.paths[i] for i in indices], strict=self.strict)


class Transformed(Dataset):
    """(transform(image), label) pairs over a LabelledImages."""

    def __init__(self, source: LabelledImages, transform):
        self.source, self.transform = source, transform

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        return self.transform(self.source.load(i)), self.source.labels[i]


@dataclass
class ClassifyData:
    classes: list[str]
    splits: dict[str, LabelledImages]  # "train", "val" and maybe "test"
    natural_imgsz: int  # the size the images come in (224 for files of mixed sizes)
    flip_changes_class: bool = False  # digits: a mirrored 3 is no 3


def load_classify_data(data: str, val_fraction: float = 0.2, strict: bool = False) -> ClassifyData:
    """Resolve `data` (embedded name, folder or CSV file) into labelled splits."""
    if not data:
        raise FovealError(f"data: name a data set: {', '.join(EMBEDDED)}, a folder, or a CSV of path,label")
    if data == "digits":
        return digits_data()
    if data == "shapes":
        return shapes_data()
    path = Path(data)
    if path.is_dir():
        return folder_data(path, val_fraction, strict)
    if path.is_file() and path.suffix.lower() == ".csv":
        return csv_data(path, val_fraction, strict)
    if path.is_file():
        raise FovealError(f"data: {path} is neither a folder of class folders nor a .csv file")
    raise FovealError(f"data: no such file or folder: {data} (embedded sets: {', '.join(EMBEDDED)})")


def digits_data(imgsz: int = 32) -> ClassifyData:
    """scikit-learn's 1,797 8x8 digits, upsampled to 32x32 RGB; a fixed stratified 80/20 split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    small = torch.from_numpy(digits.images).float().div(16).unsqueeze(1)  # (N, 1, 8, 8) in [0, 1]
    big = torch.nn.functional.interpolate(small, size=imgsz, mode="bilinear", align_corners=False)
    images = big.clamp(0, 1).mul(255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    everything = LabelledImages(digits.target, images=images)
    train, val = split_indices(digits.target, 0.2)
    return ClassifyData([str(i) for i in range(10)], {"train": everything.subset(train),
                        "val": everything.subset(val)}, imgsz, flip_changes_class=True)


def shapes_data(imgsz: int = 64, n_train: int = 2400, n_val: int = 600) -> ClassifyData:
    """foveal's synthetic shapes, one object per image, generated the same way every time."""
    from .synthetic import SHAPE_CLASSES, make_classification_set

    def split(n, seed):
        images, labels = make_classification_set(n, imgsz, seed)
        return LabelledImages(labels, images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous())

    return ClassifyData(list(SHAPE_CLASSES), {"train": split(n_train, 1), "val": split(n_val, 2),
                        "test": split(n_val, 3)}, imgsz)


def split_indices(labels, val_fraction: float):
    """A fixed (seed-independent) stratified split into train and val index lists."""
    labels = np.asarray(labels)
    index = np.arange(len(labels))
    if not 0 < val_fraction < 1:
        raise FovealError(f"val_fraction: expected a number between 0 and 1, got {val_fraction}")
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(index, test_size=val_fraction, random_state=0, stratify=stratify)
    return sorted(train.tolist()), sorted(val.tolist())


def natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def class_folders(folder: Path) -> dict[str, list[Path]]:
    """{class name: its image paths} for the sub-folders of `folder`; errors on empty ones."""
    classes = {}
    for sub in sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name)):
        images = list_images(sub)
        if not images:
            raise FovealError(f"{sub}: class folder has no images")
        classes[sub.name] = images
    return classes


def check_classes(classes: list[str], where) -> list[str]:
    if len(classes) < 2:
        raise FovealError(f"{where}: found {len(classes)} class(es); a classifier needs at least 2 "
                          "(one folder per class)")
    return classes


def labelled_files(by_class: dict[str, list[Path]], classes: list[str], strict: bool) -> LabelledImages:
    paths = [p for name in by_class for p in by_class[name]]
    labels = [classes.index(name) for name in by_class for _ in by_class[name]]
    keep = drop_unreadable(paths, strict)
    return LabelledImages([labels[i] for i in keep], paths=[paths[i] for i in keep], strict=strict)


def folder_data(folder: Path, val_fraction: float, strict: bool) -> ClassifyData:
    """`folder/{train,val,test}/<class>/*.jpg`, or `folder/<class>/*.jpg` split by val_fraction."""
    if not (folder / "train").is_dir():
        by_class = class_folders(folder)
        classes = check_classes(list(by_class), folder)
        everything = labelled_files(by_class, classes, strict)
        train, val = split_indices(everything.labels, val_fraction)
        return ClassifyData(classes, {"train": everything.subset(train), "val": everything.subset(val)}, 224)
    train_classes = class_folders(folder / "train")
    classes = check_classes(list(train_classes), folder / "train")
    splits = {"train": labelled_files(train_classes, classes, strict)}
    for name, candidates in (("val", ("val", "valid", "validation")), ("test", ("test",))):
        sub = next((folder / c for c in candidates if (folder / c).is_dir()), None)
        if sub is None:
            continue
        by_class = class_folders(sub)
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise FovealError(f"{sub}: class folder(s) {', '.join(unknown)} are not in {folder / 'train'}")
        splits[name] = labelled_files(by_class, classes, strict)
    if "val" not in splits:
        train, val = split_indices(splits["train"].labels, val_fraction)
        splits["train"], splits["val"] = splits["train"].subset(train), splits["train"].subset(val)
    return ClassifyData(classes, splits, 224)


def csv_data(path: Path, val_fraction: float, strict: bool) -> ClassifyData:
    """Rows `path,label[,split]` (header optional); image paths are relative to the CSV file."""
    rows = []
    with path.open(newline="") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            if not row or (line_no == 1 and row[0].strip().lower() in ("path", "file", "image")):
                continue
            if len(row) not in (2, 3):
                raise FovealError(f"{path}:{line_no}: expected 'path,label' or 'path,label,split', "
                                  f"got {len(row)} fields")
            image = (path.parent / row[0].strip()).resolve()
            if not image.is_file() or not is_image(image):
                raise FovealError(f"{path}:{line_no}: no such image: {row[0].strip()}")
            split = row[2].strip().lower() if len(row) == 3 else ""
            if split not in ("", "train", "val", "test"):
                raise FovealError(f"{path}:{line_no}: split must be train, val or test, got '{split}'")
            rows.append((image, row[1].strip(), split or "train"))
    classes = check_classes(sorted({r[1] for r in rows}, key=natural_key), path)
    by_split = {}
    for image, label, split in rows:
        by_split.setdefault(split, {}).setdefault(label, []).append(image)
    splits = {s: labelled_files(by_split[s], classes, strict) for s in by_split}
    if "val" not in splits:
        train, val = split_indices(splits["train"].labels, val_fraction)
        splits["train"], splits["val"] = splits["train"].subset(train), splits["train"].subset(val)
    return ClassifyData(classes, splits, 224)
