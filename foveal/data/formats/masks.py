"""Segmentation data sets on disk: the segmentation `data=` string and the image + mask folder reader.

The `data=` forms. When only one set is given, a fixed-seed `val_fraction` of its images becomes "val".

    masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/[;TEST...]]   folders of images and of index masks
    masks:ROOT/                       ROOT/images/{train,val,test}/ + ROOT/masks/{train,val,test}/,
                                      or ROOT/images/ + ROOT/masks/ as one set
    ROOT/                             the same folders without `masks:`, for black-and-white masks
                                      (as Kvasir-SEG comes): read as with binary_masks=true
    coco:..., path/to/data.yaml       COCO polygons or RLE, YOLO polygons (forms as for detection)
    shapes, polyps                    foveal's synthetic scenes (polyps: endoscopy frames) with exact masks

An image and its mask share a file stem (a.jpg + a.png; sub/a.jpg + sub/a.png below the folders),
or the mask's stem adds an ending such as `_mask` (ISIC, Carvana). A mask is an index PNG (grey or
palette: the index is the class, never the colour), the same size as its image, with 255 for pixels
to ignore. The classes come from `classes=` (a text file with one name per line, or a YAML with
`names:`), else from classes.txt beside the masks, else they are "0".."K-1" up to the largest value
in the masks. Instance models need per-object annotations (COCO or YOLO polygons); semantic models
read those too, painted into one mask (background 0, class k as k + 1).

A missing mask, a mask without an image, a mask of another size than its image or a colour mask
(from the file header) is a bad label: an error naming the file, or with strict=False the image is
skipped with one counted warning. Mask values are checked when a mask is read (read_labels).
"""

from pathlib import Path

import numpy as np
from PIL import Image

from ...errors import FovealError
from ..detection import DetectionData
from ..images import list_images
from ..polyps import polyps_segmentation_data
from ..segmentation import (BACKGROUND, IGNORE_INDEX, MaskedImage, SegmentationData, mask_mode_problem,
                            read_mask_file, semantic_from_instances, shapes_segmentation_data)
from . import (SPLITS, BadLabel, Problems, absolute, image_size, keep_readable, read_detection_data, read_text,
               split_off_val, yolo)

KINDS = ("semantic", "instance")
FORMS = ("masks:IMAGES/,MASKS/[;VAL_IMAGES/,VAL_MASKS/], masks:ROOT/ (ROOT/images/ + ROOT/masks/), "
         "ROOT/ (the same, black-and-white masks), "
         "coco:ANNOTATIONS.json[,IMAGES/][;VAL.json[,IMAGES/]], coco:FOLDER/, path/to/data.yaml "
         "(YOLO polygons), shapes or polyps")
MASK_NAME_ENDINGS = ("_mask", "_segmentation", "_label", "_gt")  # a.jpg + a_mask.png
CLASS_LIST_FILE = "classes.txt"


def load_segmentation_data(data: str, kind: str, classes: str = "", strict: bool = True, val_fraction: float = 0.2,
                           binary_masks: bool = False) -> SegmentationData | DetectionData:
    """The data set a segmentation `data=` string names (forms in the module docstring), split into train/val.

    kind "semantic" gives a SegmentationData; kind "instance" a DetectionData whose items have
    `segments` (or `masks`) for every object. classes: a class list file for mask folders.
    binary_masks: masks are black and white (e.g. 0/255 JPEGs); a pixel over 127 is class 1.
    """
    if kind not in KINDS:
        raise FovealError(f"kind={kind}: use one of {', '.join(KINDS)}")
    if str(data).strip() == "shapes":
        return shapes_segmentation_data(instances=kind == "instance")
    if str(data).strip() == "polyps":
        return polyps_segmentation_data(instances=kind == "instance")
    form, _, rest = str(data).partition(":")
    if is_mask_folder(data):
        if not _looks_black_and_white(absolute(data) / "masks"):
            raise FovealError(f"data={data}: its masks hold class indices, and a plain folder is for black-and-white "
                              f"masks; a folder of images and masks is read as masks:{data}; use {FORMS}")
        form, rest, binary_masks = "masks", str(data), True
    if form == "masks":
        if kind == "instance":
            raise FovealError(f"data={data}: instance models need per-object annotations: COCO or YOLO polygons, "
                              f"not mask folders")
        result = read_mask_folders(rest, data, classes, strict, binary_masks)
    else:
        if classes:
            raise FovealError(f"classes={classes}: only for masks: folders; COCO and YOLO data name their classes")
        if binary_masks:
            raise FovealError("binary_masks=true: only for masks: folders; COCO and YOLO data have outlines")
        _check_annotation_source(data)
        instances = read_detection_data(data, strict, segments=True)
        result = instances if kind == "instance" else semantic_from_instances(instances)
    result.splits = split_off_val(result.splits, val_fraction)
    return result


def is_mask_folder(data: str) -> bool:
    """True for a plain folder holding images/ and masks/ (and no data.yaml), as Kvasir-SEG comes: read
    with black-and-white masks (0/255, JPEG noise included)."""
    if not str(data).strip():
        return False
    path = absolute(data)
    return (path / "images").is_dir() and (path / "masks").is_dir() and not (path / "data.yaml").is_file()


def _looks_black_and_white(masks: Path, sample: int = 8) -> bool:
    """Whether the first masks under `masks` are black and white rather than class indices: more of their
    non-zero pixels over 127 than under (JPEG noise leaves a few grey ones at the edges; class indices are
    all small but for the ignore value 255). Unreadable masks are left to the reader to report."""
    dark = bright = 0
    for path in list_images(masks)[:sample]:
        try:
            with Image.open(path) as image:
                values = np.asarray(image.convert("L"))
        except (OSError, SyntaxError, ValueError):
            continue
        dark += int(np.count_nonzero((values > 0) & (values < 128)))
        bright += int(np.count_nonzero(values >= 128))
    return bright >= dark


def _check_annotation_source(data: str):
    """A segmentation-worded error for what is neither COCO nor a YOLO data.yaml (detection's would list VOC)."""
    form, _, rest = str(data).partition(":")
    if form in ("coco", "voc"):  # the detection reader words these (VOC: boxes only)
        return
    path = absolute(rest if form == "yolo" else data)
    if path.is_dir() and (path / "data.yaml").is_file() or path.is_file() and path.suffix in (".yaml", ".yml"):
        return
    hint = f"; a folder of images and masks is read as masks:{data}" if (path / "masks").is_dir() else ""
    raise FovealError(f"data={data}: not a segmentation data set{hint}; use {FORMS}")


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
