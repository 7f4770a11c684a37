"""Pascal VOC XML: one file per image with `filename`, `size/width,height` and, per `object`, a `name`,
`bndbox/xmin,ymin,xmax,ymax` and `difficult`.

VOC pixel coordinates are 1-based and inclusive (a box over the first 10 pixel columns has xmin=1,
xmax=10), foveal's are 0-based edges with x2 = x1 + width: so x1 = xmin - 1, x2 = xmax (y alike),
and back when writing. Boxes may overshoot the image by 1 px (0-based tools write xmin=0); they are
clipped. `difficult` objects keep their flag (ImageAnnotations.difficult), which evaluation treats
by VOC's rule: a detection matched to one counts neither as a true nor as a false positive, and it
is not among the objects to find. COCO's crowd regions are written as difficult, the nearest VOC
has. The classes are the sorted names found, unless a list is given (then other names are bad
labels); VOC files keep no class list, so class order is not preserved.
"""

import glob
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np

from ...errors import FovealError, did_you_mean
from ...files import atomic_write, read_text, write_text
from ..detection import DetectionData, ImageAnnotations, unscored
from ..images import is_image
from .common import (BOX_SLACK_PIXELS, SPLITS, BadLabel, Problems, absolute, annotated, fit_box, image_size,
                     keep_readable, number, place_image)

CORNERS = ("xmin", "ymin", "xmax", "ymax")


def folder_set(annotations: Path, images: Path) -> tuple[list[Path], Path]:
    """(every XML file in `annotations`, images folder); a missing folder is an error."""
    for folder in (annotations, images):
        if not Path(folder).is_dir():
            raise FovealError(f"{folder}: no such folder")
    return sorted(Path(annotations).glob("*.xml")), Path(images)


def find_voc_sets(root: Path) -> dict[str, tuple[list[Path], Path]]:
    """ROOT/Annotations + ROOT/JPEGImages, split by ROOT/ImageSets/Main/{train,val,test}.txt when present."""
    every_xml, images = folder_set(Path(root) / "Annotations", Path(root) / "JPEGImages")
    sets = {}
    for split in SPLITS:
        listing = Path(root) / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            ids = [line.split()[0] for line in read_text(listing).splitlines() if line.strip()]
            sets[split] = ([Path(root) / "Annotations" / f"{i}.xml" for i in ids], images)
    return sets or {"train": (every_xml, images)}


def read_voc(sets: dict[str, tuple[list[Path], Path]], classes: list[str] | None = None,
             strict: bool = True) -> DetectionData:
    """{split: (XML files, images folder)} as one DetectionData."""
    problems = Problems(strict)
    parsed = {split: [found for xml in files for found in [_parse(absolute(xml), absolute(images), classes, problems)]
                      if found is not None] for split, (files, images) in sets.items()}
    if classes is None:
        classes = sorted({name for items in parsed.values() for *_, objects in items for name, _, _ in objects})
    index = {name: i for i, name in enumerate(classes)}
    splits = {split: [replace(annotated(image, width, height, [box for _, box, _ in objects],
                                        [index[name] for name, _, _ in objects], [False] * len(objects)),
                              difficult=np.array([hard for *_, hard in objects], bool))
                      for image, width, height, objects in items] for split, items in parsed.items()}
    splits = keep_readable(splits, problems, absolute(next(iter(sets.values()))[1]).parent)  # the VOC root
    problems.warn()
    return DetectionData(list(classes), splits)


def _parse(xml: Path, images: Path, classes, problems: Problems):
    """(image, width, height, [(name, box, difficult)]) of one XML file, or None (reported) when bad."""
    try:
        try:
            root = ET.parse(xml).getroot()
        except ET.ParseError as e:
            raise BadLabel(f"{xml}:{e.position[0]}: malformed XML ({str(e).split(':')[0]})") from None
        except OSError:
            raise BadLabel(f"{xml}: no such file") from None
        image = _find_image(root.findtext("filename"), xml, images)
        size = [root.findtext(f"size/{key}") for key in ("width", "height")]
        width, height = (int(number(text, f"{xml}: size")) for text in size) if all(size) else (0, 0)
        if width <= 0 or height <= 0:  # some tools write 0 or leave the size out
            width, height = image_size(image)
        objects = []
        for k, element in enumerate(root.findall("object"), 1):
            place, name = f"{xml}: object {k}", (element.findtext("name") or "").strip()
            if not name:
                raise BadLabel(f"{place}: no name")
            if classes is not None and name not in classes:
                raise BadLabel(f"{place}: unknown class {name!r}{did_you_mean(name, classes)}")
            if element.find("bndbox") is None:
                raise BadLabel(f"{place}: no bndbox")
            xmin, ymin, xmax, ymax = (number(element.findtext(f"bndbox/{c}"), f"{place} {c}") for c in CORNERS)
            box = fit_box([xmin - 1, ymin - 1, xmax, ymax], height, width, BOX_SLACK_PIXELS, place)
            objects.append((name, box, (element.findtext("difficult") or "0").strip() in ("1", "true")))
    except BadLabel as e:
        problems.add(str(e))
        return None
    return image, width, height, objects


def _find_image(filename: str | None, xml: Path, images: Path) -> Path:
    """images/filename, or else the image named like the XML file (tools that rename files forget `filename`)."""
    if filename and (images / filename.strip()).is_file():
        return images / filename.strip()
    same_stem = sorted(p for p in images.glob(glob.escape(xml.stem) + ".*") if is_image(p))
    if not same_stem:
        raise BadLabel(f"{xml}: image {filename or xml.stem + '.*'} not found in {images}")
    return same_stem[0]


def write_voc(data: DetectionData, folder, link: bool = True) -> Path:
    """folder/Annotations/*.xml, folder/JPEGImages/ and folder/ImageSets/Main/<split>.txt (the VOCdevkit layout)."""
    folder, taken = Path(folder), set()
    (folder / "Annotations").mkdir(parents=True, exist_ok=True)
    (folder / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for split, items in data.splits.items():
        ids = []
        for item in items:
            name = place_image(item, len(taken), folder / "JPEGImages", taken, link)
            ids.append(Path(name).stem)
            tree = _annotation(item, name, data.classes)
            atomic_write(folder / "Annotations" / f"{ids[-1]}.xml", lambda tmp: tree.write(tmp, encoding="unicode"))
        write_text(folder / "ImageSets" / "Main" / f"{split}.txt", "".join(f"{i}\n" for i in ids))
    return folder


def _annotation(item: ImageAnnotations, name: str, classes: list[str]) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "filename").text = name
    size = ET.SubElement(root, "size")
    for key, value in (("width", item.width), ("height", item.height), ("depth", 3)):
        ET.SubElement(size, key).text = str(value)
    for (x1, y1, x2, y2), label, hard in zip(item.boxes.tolist(), item.labels.tolist(), unscored(item).tolist()):
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = classes[label]
        ET.SubElement(element, "difficult").text = str(int(hard))
        box = ET.SubElement(element, "bndbox")
        for corner, value in zip(CORNERS, (x1 + 1, y1 + 1, x2, y2)):  # back to 1-based inclusive
            ET.SubElement(box, corner).text = f"{value:.4f}".rstrip("0").rstrip(".")  # integers stay integers
    ET.indent(root)
    return ET.ElementTree(root)
