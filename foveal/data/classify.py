"""Classification data: embedded sets (digits, shapes), ImageFolder layouts and `path,label` CSVs.

Every source becomes a `LabelledImages` per split: labels plus a way to read image i as a
(3, H, W) uint8 tensor. Transforms are applied on top by `Transformed`, so the report can show
the raw images and the engine sees normalised tensors.
"""

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import Dataset

from ..errors import FovealError
from ..files import read_text
from .images import CHECK_CACHE, find_unreadable, is_image, list_images, read_image

EMBEDDED = ("digits", "shapes")


class LabelledImages:
    """Images with class indices: in memory (uint8 (N, 3, H, W)) or as files read on demand.

    Files are checked when the data is indexed (find_unreadable), so each one decodes here; a file
    that no longer does (changed since) stops with its name, never lends its label to other pixels.
    """

    def __init__(self, labels, images: torch.Tensor | None = None, paths: list[Path] | None = None):
        self.labels = [int(x) for x in labels]
        self.images, self.paths = images, paths

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
        return read_image(self.paths[i])

    def subset(self, indices) -> "LabelledImages":
        indices = list(indices)
        labels = [self.labels[i] for i in indices]
        if self.in_memory:
            return LabelledImages(labels, images=self.images[indices])
        return LabelledImages(labels, paths=[self.paths[i] for i in indices])


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


def split_indices(labels, val_fraction: float, classes: list[str] | None = None, where="data"):
    """A fixed (seed-independent) stratified split into train and val index lists, every class in both.

    Checks first what scikit-learn would refuse with a less helpful message: a class of fewer than
    2 images, or a val (or train) share smaller than the number of classes.
    """
    if not 0 < val_fraction < 1:
        raise FovealError(f"val_fraction: expected a number between 0 and 1, got {val_fraction}")
    labels = np.asarray(labels, np.int64)
    counts = np.bincount(labels, minlength=len(classes or []))  # (classes,) images per class
    names = classes or [str(k) for k in range(len(counts))]
    if len(counts) == 0:
        raise FovealError(f"{where}: no images to split into train and val")
    smallest = int(counts.argmin())
    if counts[smallest] < 2:
        raise FovealError(f"{where}: class '{names[smallest]}' has {counts[smallest]} image(s); splitting "
                          f"val_fraction={val_fraction} off needs at least 2 per class (one to train on, one to "
                          f"validate): add images, or give val images yourself (a val/ folder or 'val' CSV rows)")
    n_val = math.ceil(val_fraction * len(labels))  # as scikit-learn rounds
    for part, n in (("val", n_val), ("train", len(labels) - n_val)):
        if n < len(counts):
            change = "raise" if part == "val" else "lower"
            raise FovealError(f"{where}: val_fraction={val_fraction} of {len(labels)} images leaves {n} {part} "
                              f"image(s), fewer than the {len(counts)} classes; {change} val_fraction or add images")
    train, val = train_test_split(np.arange(len(labels)), test_size=val_fraction, random_state=0, stratify=labels)
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


def labelled_files(by_class: dict[str, list[Path]], classes: list[str]) -> LabelledImages:
    paths = [p for name in by_class for p in by_class[name]]
    labels = [classes.index(name) for name in by_class for _ in by_class[name]]
    return LabelledImages(labels, paths=paths)


def readable_splits(splits: dict[str, LabelledImages], classes: list[str], val_fraction: float, strict: bool,
                    where: Path, root: Path) -> dict[str, LabelledImages]:
    """The splits without their unreadable files (one warning for all; the check is cached in
    root/CHECK_CACHE), and a val split taken from train when none is given (after dropping, so that
    every class is sure to keep an image in both). `where` names the data in errors."""
    bad = find_unreadable([path for split in splits.values() for path in split.paths], strict, root / CHECK_CACHE)
    splits = {name: split.subset(i for i, path in enumerate(split.paths) if path not in bad)
              for name, split in splits.items()}
    if "val" not in splits and val_fraction > 0:  # 0: each set as given (`val` scores one set whole)
        train, val = split_indices(splits["train"].labels, val_fraction, classes, where)
        splits["train"], splits["val"] = splits["train"].subset(train), splits["train"].subset(val)
    return splits


def folder_data(folder: Path, val_fraction: float, strict: bool) -> ClassifyData:
    """`folder/{train,val,test}/<class>/*.jpg`, or `folder/<class>/*.jpg` split by val_fraction."""
    if not (folder / "train").is_dir():
        by_class = class_folders(folder)
        classes = check_classes(list(by_class), folder)
        splits = {"train": labelled_files(by_class, classes)}
        return ClassifyData(classes, readable_splits(splits, classes, val_fraction, strict, folder, folder), 224)
    train_classes = class_folders(folder / "train")
    classes = check_classes(list(train_classes), folder / "train")
    splits = {"train": labelled_files(train_classes, classes)}
    for name, candidates in (("val", ("val", "valid", "validation")), ("test", ("test",))):
        sub = next((folder / c for c in candidates if (folder / c).is_dir()), None)
        if sub is None:
            continue
        by_class = class_folders(sub)
        unknown = sorted(set(by_class) - set(classes))
        if unknown:
            raise FovealError(f"{sub}: class folder(s) {', '.join(unknown)} are not in {folder / 'train'}")
        splits[name] = labelled_files(by_class, classes)
    return ClassifyData(classes, readable_splits(splits, classes, val_fraction, strict, folder / "train", folder),
                        224)


def csv_data(path: Path, val_fraction: float, strict: bool) -> ClassifyData:
    """Rows `path,label[,split]` (header optional); image paths are relative to the CSV file.
    UTF-8 with or without a byte-order mark, any line ends (as Excel on Windows saves them)."""
    rows = []
    reader = csv.reader(io.StringIO(read_text(path), newline=""))
    for row in reader:
        line_no = reader.line_num
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
    if "train" not in by_split and val_fraction > 0:
        raise FovealError(f"{path}: no train rows (every row's split is {' or '.join(sorted(by_split))}); "
                          f"mark the rows to train on 'train', or leave their split empty")
    splits = {s: labelled_files(by_split[s], classes) for s in sorted(by_split, key=("train", "val", "test").index)}
    return ClassifyData(classes, readable_splits(splits, classes, val_fraction, strict, path, path.parent), 224)
