"""Image + mask folders on disk: the `masks:` form of the segmentation `data=` string (all forms in
segmentation.py), and whether a plain folder is one.

An image and its mask share a file stem (a.jpg + a.png; sub/a.jpg + sub/a.png below the folders),
or the mask's stem adds an ending such as `_mask` (ISIC, Carvana). A mask is an index PNG (grey or
palette: the index is the class, never the colour), the same size as its image, with 255 for pixels
to ignore. The classes come from `classes=` (a text file with one name per line, or a YAML with
`names:`), else from classes.txt beside the masks, else they are "0".."K-1" up to the largest value
in the masks.

A missing mask, a mask without an image, a mask of another size than its image or a colour mask
(from the file header) is a bad label: an error naming the file, or with strict=False the image is
skipped with one counted warning. Mask values are checked when a mask is read (read_labels).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FovealError
from ...files import read_text
from ..images import list_images
from ..segmentation import BACKGROUND, IGNORE_INDEX, MaskedImage, SegmentationData, mask_mode_problem, read_mask_file
from . import yolo
from .common import SPLITS, BadLabel, Problems, absolute, image_size, keep_readable

FORMS = ("masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/], masks:ROOT/ (ROOT/images/ + ROOT/masks/), "
         "ROOT/ (the same, black-and-white masks), "
         "coco:ANNOTATIONS.json[,IMAGES/][;VAL.json[,IMAGES/]], coco:FOLDER/, path/to/data.yaml "
         "(YOLO polygons), shapes or polyps")
MASK_NAME_ENDINGS = ("_mask", "_segmentation", "_label", "_gt")  # a.jpg + a_mask.png
CLASS_LIST_FILE = "classes.txt"


def is_mask_folder(data: str) -> bool:
    """True for a plain folder holding images/ and masks/ (and no data.yaml), as Kvasir-SEG comes: read
    with black-and-white masks (0/255, JPEG noise included)."""
    if not str(data).strip():
        return False
    path = absolute(data)
    return (path / "images").is_dir() and (path / "masks").is_dir() and not (path / "data.yaml").is_file()


def read_mask_folders(text: str, data: str, classes: str = "", strict: bool = True,
                      binary: bool = False) -> SegmentationData:
    """The `masks:` form (text is what follows `masks:`), splits as the folders give them."""
    texts = [[p.strip() for p in s.split(",")] for s in text.split(";") if s.strip()]
    if len(texts) == 1 and len(texts[0]) == 1 and texts[0][0]:
        root = absolute(texts[0][0])
        sets, near = find_mask_sets(root), [root]
    elif 0 < len(texts) <= len(SPLITS) and all(len(parts) == 2 and all(parts) for parts in texts):
        sets, near = {split: (absolute(images), absolute(masks)) for split, (images, masks) in zip(SPLITS, texts)}, []
    else:
        raise FovealError(f"data={data}: not a segmentation data set; use {FORMS}")
    problems = Problems(strict)
    splits = {split: paired_items(images, masks, binary, problems) for split, (images, masks) in sets.items()}
    root = near[0] if near else next(iter(sets.values()))[0].parent  # masks:ROOT/, else beside the images folder
    splits = keep_readable(splits, problems, root)
    near += [folder for _, masks in sets.values() for folder in (masks, masks.parent)]
    class_file = absolute(classes) if classes else next((f / CLASS_LIST_FILE for f in near
                                                         if (f / CLASS_LIST_FILE).is_file()), None)
    if class_file is not None:
        names = read_class_list(class_file)
        if binary and len(names) != 2:
            raise FovealError(f"{class_file}: binary_masks=true gives 2 classes, but it lists {len(names)}")
    elif binary:
        names = [BACKGROUND, "foreground"]
    else:
        names = classes_from_masks(splits, problems, next(iter(sets.values()))[1])
    problems.warn()
    return SegmentationData(names, splits)


def find_mask_sets(root: Path) -> dict[str, tuple[Path, Path]]:
    """{split: (images folder, masks folder)}: ROOT/images/<split>/ + ROOT/masks/<split>/, or one set."""
    images, masks = root / "images", root / "masks"
    for folder in (images, masks):
        if not folder.is_dir():
            raise FovealError(f"{folder}: no such folder (masks:ROOT/ needs ROOT/images/ and ROOT/masks/)")
    splits = [split for split in SPLITS if (images / split).is_dir()]
    if not splits:
        return {"train": (images, masks)}
    for split in splits:
        if not (masks / split).is_dir():
            raise FovealError(f"{masks / split}: no such folder (the masks of {images / split})")
    return {split: (images / split, masks / split) for split in splits}


def paired_items(images: Path, masks: Path, binary: bool, problems: Problems) -> list[MaskedImage]:
    """Every image of `images` with its mask from `masks`, paired by the path below the folder minus suffix."""
    for folder in (images, masks):
        if not folder.is_dir():
            raise FovealError(f"{folder}: no such folder")
    image_of, ambiguous = _by_stem(images, problems)
    if not image_of and not ambiguous:
        raise FovealError(f"{images}: no images")
    found, ambiguous_masks = _by_stem(masks, problems)
    mask_of, reported = {}, ambiguous | ambiguous_masks
    for stem, mask in found.items():
        image_stem = _image_stem(stem, image_of)
        if image_stem is None and stem not in ambiguous:
            problems.add(f"{mask}: mask without an image (none called {stem}.* under {images})")
        elif image_stem in mask_of:
            problems.add(f"{mask}: a second mask for {image_of[image_stem]} (the first is {mask_of[image_stem]})")
            reported.add(image_stem)
        elif image_stem is not None:
            mask_of[image_stem] = mask
    items = []
    for stem, image in image_of.items():
        try:
            if stem in reported:
                continue
            if stem not in mask_of:
                raise BadLabel(f"{image}: no mask (none called {stem}.* under {masks})")
            items.append(_checked_item(image, mask_of[stem], binary))
        except BadLabel as e:
            problems.add(str(e))
    return items


def _by_stem(folder: Path, problems: Problems) -> tuple[dict[str, Path], set[str]]:
    """({path below folder without suffix: file} of the image files below `folder`, names used twice: reported)."""
    found, twice = {}, set()
    for path in list_images(folder):
        stem = path.relative_to(folder).with_suffix("").as_posix()
        if stem in found:
            problems.add(f"{path}: {found[stem].name} has the same name but for its suffix; which one is meant?")
            twice.add(stem)
        found[stem] = path
    return {stem: path for stem, path in found.items() if stem not in twice}, twice


def _image_stem(mask_stem: str, images: dict) -> str | None:
    if mask_stem in images:
        return mask_stem
    for ending in MASK_NAME_ENDINGS:
        if mask_stem.endswith(ending) and mask_stem[:-len(ending)] in images:
            return mask_stem[:-len(ending)]
    return None


def _checked_item(image: Path, mask: Path, binary: bool) -> MaskedImage:
    """The pair as a MaskedImage, checked from the file headers only: mask readable, of index mode, same size."""
    width, height = image_size(image)
    try:
        with Image.open(mask) as opened:
            size, mode = opened.size, opened.mode
    except (OSError, SyntaxError, ValueError) as e:
        raise BadLabel(f"{mask}: not a readable mask image ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
    problem = mask_mode_problem(mode, binary)
    if problem:
        raise BadLabel(f"{mask}: {problem}")
    if size != (width, height):
        raise BadLabel(f"{mask}: mask is {size[0]}x{size[1]} px but its image {image} is {width}x{height} px")
    return MaskedImage(str(image), str(mask), width, height)


def read_class_list(path: Path) -> list[str]:
    """Class names, index = position: a YAML with `names:` (list or {id: name}), else one name per line
    (blank lines ignored, `#` starts a comment)."""
    if not path.is_file():
        raise FovealError(f"classes={path}: no such file")
    if path.suffix.lower() in (".yaml", ".yml"):
        names, lines = yolo.class_names(yolo.read_yaml(path), path), None
    else:
        text = read_text(path)
        numbered = [(number, line.split("#", 1)[0].strip()) for number, line in enumerate(text.splitlines(), 1)]
        numbered = [(number, name) for number, name in numbered if name]
        names, lines = [name for _, name in numbered], [number for number, _ in numbered]
    if not names:
        raise FovealError(f"{path}: no class names")
    if len(names) > IGNORE_INDEX:
        raise FovealError(f"{path}: {len(names)} classes do not fit in 8-bit masks ({IGNORE_INDEX} means ignore)")
    first = {}
    for k, name in enumerate(names):
        if name in first:
            where = f"{path}:{lines[k]}" if lines else f"{path}: names"
            raise FovealError(f"{where}: class {name!r} is listed twice (first as class {first[name]})")
        first[name] = k
    return names


def classes_from_masks(splits: dict[str, list[MaskedImage]], problems: Problems, masks: Path) -> list[str]:
    """"0".."K-1" for the largest value K - 1 in any mask (reads every mask once); unreadable masks are dropped."""
    seen = np.zeros(256, bool)
    for split, items in splits.items():
        kept = []
        for item in items:
            try:
                seen[np.unique(read_mask_file(Path(item.mask)))] = True
                kept.append(item)
            except FovealError as e:
                problems.add(str(e))
        splits[split] = kept
    values = np.flatnonzero(seen[:IGNORE_INDEX])
    if values.max(initial=0) == 0 and any(splits.values()):
        held = "0 and 255 (ignore)" if seen[IGNORE_INDEX] else "0"
        raise FovealError(f"{masks}: the masks hold only {held}: for black-and-white masks set binary_masks=true; "
                          f"else give classes= (a class list file)")
    return [str(k) for k in range(int(values.max(initial=0)) + 1)]
