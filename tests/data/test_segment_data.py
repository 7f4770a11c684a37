"""Segmentation readers on tiny hand-made data sets: mask folders, class lists, COCO segments, YOLO polygons."""

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.data.detection import instance_masks
from foveal.data.formats import load_detection_data, load_segmentation_data
from foveal.data.segmentation import IGNORE_INDEX, read_labels
from foveal.errors import FovealError

from tests.conftest import run_cli

PALETTE = [0, 0, 0, 128, 64, 128, 70, 130, 180] + [255, 255, 255] * 253  # road purple, sky blue


def write_image(path: Path, width: int, height: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 200)).save(path)


def write_mask(path: Path, labels: np.ndarray, mode: str = "L") -> np.ndarray:
    """Save (H, W) class indices as a grey ('L') or palette ('P') PNG; returns them."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(labels.astype(np.uint8), "L")
    if mode == "P":
        image = image.convert("P")  # 'L' -> 'P' keeps the values as indices; the palette only colours them
        image.putpalette(PALETTE)
    image.save(path)
    return labels


def labels(width: int, height: int, value: int, ignore: bool = False) -> np.ndarray:
    """Background 0, a block of `value` in the lower right, optionally a row of 255 on top."""
    mask = np.zeros((height, width), np.uint8)
    mask[height // 2:, width // 2:] = value
    if ignore:
        mask[0] = IGNORE_INDEX
    return mask


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def one_line_error(*expected: str, **kwargs) -> str:
    with pytest.raises(FovealError) as caught:
        load_segmentation_data(**{"kind": "semantic", **kwargs})
    message = str(caught.value)
    assert "\n" not in message and all(part in message for part in expected), message
    return message


def skipped_warning(count: int, *expected: str, **kwargs):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_segmentation_data(**{"kind": "semantic", "strict": False, "val_fraction": 0, **kwargs})
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and f"skipped {count} " in messages[0], messages
    assert all(part in messages[0] for part in expected), messages[0]
    return result


@pytest.fixture
def mask_set(tmp_path) -> tuple[str, dict]:
    """images/{a.jpg, b.png, sub/c.jpg} + masks/{a.png, b.png, sub/c.png}; the masks as drawn."""
    drawn = {}
    for stem, suffix, size, value in [("a", ".jpg", (8, 6), 1), ("b", ".png", (6, 6), 2), ("sub/c", ".jpg", (4, 8), 1)]:
        write_image(tmp_path / "images" / f"{stem}{suffix}", *size)
        drawn[stem] = write_mask(tmp_path / "masks" / f"{stem}.png", labels(*size, value, ignore=stem == "a"))
    return f"masks:{tmp_path / 'images'},{tmp_path / 'masks'}", drawn


def test_index_masks_paired_by_stem_with_a_class_list(mask_set, tmp_path):
    data, drawn = mask_set
    class_list = write(tmp_path / "my_classes.txt", "# what the indices mean\nbackground\n\nroad  # tarmac\nsky\n")
    result = load_segmentation_data(data, "semantic", classes=str(class_list), val_fraction=0)
    assert result.classes == ["background", "road", "sky"] and list(result.splits) == ["train"]
    items = result.splits["train"]
    assert [(Path(i.image).name, Path(i.mask).name) for i in items] == [("a.jpg", "a.png"), ("b.png", "b.png"),
                                                                        ("c.jpg", "c.png")]
    assert [(i.width, i.height) for i in items] == [(8, 6), (6, 6), (4, 8)]
    for item, stem in zip(items, ["a", "b", "sub/c"]):
        np.testing.assert_array_equal(read_labels(item, len(result.classes)), drawn[stem])


def test_root_layout_with_split_folders_and_classes_txt(tmp_path):
    for split, stem in [("train", "t1"), ("train", "t2"), ("val", "v1")]:
        write_image(tmp_path / f"ds/images/{split}/{stem}.jpg", 6, 4)
        write_mask(tmp_path / f"ds/masks/{split}/{stem}.png", labels(6, 4, 1))
    write(tmp_path / "ds/classes.txt", "background\nlesion\n")
    result = load_segmentation_data(f"masks:{tmp_path / 'ds'}", "semantic")
    assert result.classes == ["background", "lesion"]
    assert {split: [Path(i.image).stem for i in items] for split, items in result.splits.items()} == {
        "train": ["t1", "t2"], "val": ["v1"]}
    (tmp_path / "ds/masks/val/v1.png").rename(tmp_path / "ds/v1.png")
    (tmp_path / "ds/masks/val").rmdir()
    one_line_error("masks/val: no such folder", data=f"masks:{tmp_path / 'ds'}", strict=False)


def test_palette_masks_yaml_names_and_mask_name_endings(tmp_path):
    write_image(tmp_path / "img/a.png", 5, 4)
    drawn = write_mask(tmp_path / "ann/a_mask.png", labels(5, 4, 2), mode="P")
    names = write(tmp_path / "names.yaml", "names:\n  0: void\n  1: road\n  2: sky\n")
    result = load_segmentation_data(f"masks:{tmp_path / 'img'},{tmp_path / 'ann'}", "semantic", classes=str(names))
    assert result.classes == ["void", "road", "sky"]
    (item,) = result.splits["train"]
    assert Image.open(item.mask).mode == "P"
    np.testing.assert_array_equal(read_labels(item, 3), drawn)  # the indices, not the palette's colours


def test_classes_from_the_largest_mask_value_and_binary_masks(tmp_path):
    write_image(tmp_path / "img/a.png", 6, 6)
    write_image(tmp_path / "img/b.png", 6, 6)
    write_mask(tmp_path / "msk/a.png", labels(6, 6, 3, ignore=True))
    write_mask(tmp_path / "msk/b.png", labels(6, 6, 1))
    data = f"masks:{tmp_path / 'img'},{tmp_path / 'msk'}"
    assert load_segmentation_data(data, "semantic").classes == ["0", "1", "2", "3"]  # 255 is not a class
    write_mask(tmp_path / "msk/a.png", labels(6, 6, 255))
    write_mask(tmp_path / "msk/b.png", labels(6, 6, 255))
    one_line_error("msk: the masks hold only 0 and 255 (ignore)", "binary_masks=true", data=data)
    result = load_segmentation_data(data, "semantic", binary_masks=True, val_fraction=0)
    assert result.classes == ["background", "foreground"]
    np.testing.assert_array_equal(read_labels(result.splits["train"][0], 2, binary=True), labels(6, 6, 1))


def test_one_set_is_split_into_train_and_val(tmp_path):
    for k in range(5):
        write_image(tmp_path / f"img/{k}.png", 4, 4)
        write_mask(tmp_path / f"msk/{k}.png", labels(4, 4, 1))
    data = f"masks:{tmp_path / 'img'},{tmp_path / 'msk'}"
    first, again = (load_segmentation_data(data, "semantic", val_fraction=0.4) for _ in range(2))
    names = [[Path(i.image).name for i in d.splits[s]] for d in (first, again) for s in ("train", "val")]
    assert names[:2] == names[2:] and [len(n) for n in names[:2]] == [3, 2] and not set(names[0]) & set(names[1])


@pytest.mark.parametrize("damage, expected", [
    (lambda root: (root / "masks/b.png").unlink(), ["images/b.png: no mask (none called b.*"]),
    (lambda root: write_mask(root / "masks/d.png", labels(4, 4, 1)), ["masks/d.png: mask without an image"]),
    (lambda root: write_mask(root / "masks/b.png", labels(6, 5, 1)),
     ["masks/b.png: mask is 6x5 px but its image", "images/b.png is 6x6 px"]),
    (lambda root: Image.new("RGB", (6, 6), (128, 64, 128)).save(root / "masks/b.png"),
     ["masks/b.png: mask is a colour (RGB) image", "binary_masks=true"]),
    (lambda root: write(root / "masks/b.png", "not a png"), ["masks/b.png: not a readable mask image"]),
])
def test_bad_mask_folders_name_the_file(mask_set, tmp_path, damage, expected):
    data, _ = mask_set
    damage(tmp_path)
    one_line_error(*expected, "strict=false", data=data, classes=str(write(tmp_path / "c.txt", "bg\nroad\nsky\n")))
    kept = skipped_warning(1, *expected, data=data, classes=str(tmp_path / "c.txt")).splits["train"]
    assert [Path(item.image).stem for item in kept] == (["a", "b", "c"] if "d.png" in expected[0] else ["a", "c"])


def test_value_outside_the_class_list_is_reported_when_read(mask_set, tmp_path):
    data, _ = mask_set
    result = load_segmentation_data(data, "semantic", classes=str(write(tmp_path / "c.txt", "bg\nroad\n")))
    read_labels(result.splits["train"][0], 2)  # a.png: values 0, 1 and 255 (ignore)
    with pytest.raises(FovealError, match=r"masks/b.png: mask value 2 is not a class \(0..1\)"):
        read_labels(result.splits["train"][1], 2)


@pytest.mark.parametrize("text, expected", [
    ("bg\nroad\nbg\n", "c.txt:3: class 'bg' is listed twice (first as class 0)"),
    ("# nothing\n\n", "c.txt: no class names"),
])
def test_bad_class_lists(mask_set, tmp_path, text, expected):
    one_line_error(expected, data=mask_set[0], classes=str(write(tmp_path / "c.txt", text)))


def test_wrong_forms_and_kinds(mask_set, tmp_path):
    data, _ = mask_set
    one_line_error("no object in any mask (a pixel over 127 is object); boxes and instances are read from "
                   "black-and-white masks (0/255), not class-index masks", data=data, kind="instance")
    one_line_error(f"a folder of images and masks is read as masks:{tmp_path}", "masks:IMAGES/,MASKS/",
                   data=str(tmp_path))
    one_line_error("not a segmentation data set", data="masks:a/,b/,c/")
    one_line_error("VOC XML files hold boxes only", data=f"voc:{tmp_path},{tmp_path}")
    one_line_error("kind=panoptic: use one of semantic, instance", data=data, kind="panoptic")


def test_shapes_is_dispatched(monkeypatch):
    from foveal.data.formats import segmentation as masks

    monkeypatch.setattr(masks, "shapes_segmentation_data", lambda instances: f"shapes, instances={instances}")
    assert load_segmentation_data("shapes", "instance") == "shapes, instances=True"


# COCO: image a.png 10x8 with a polygon (a 4x3 rectangle), a compressed-RLE crowd region and an
# uncompressed RLE; b.png without objects.
RECTANGLE = [[2, 1, 6, 1, 6, 4, 2, 4]]


def drawn_region(height: int, width: int, rows: slice, columns: slice) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    mask[rows, columns] = 1
    return mask


def run_lengths(mask: np.ndarray) -> list[int]:
    """COCO's uncompressed counts, by hand: runs of 0s and 1s alternately, column by column, 0s first."""
    flat, runs, current, length = mask.ravel(order="F"), [], 0, 0
    for value in flat:
        if value != current:
            runs, current, length = runs + [length], value, 0
        length += 1
    return runs + [length]


@pytest.fixture
def coco_segments(tmp_path) -> tuple[Path, dict]:
    from pycocotools import mask as coco_mask

    write_image(tmp_path / "imgs/a.png", 10, 8)
    write_image(tmp_path / "imgs/b.png", 5, 5)
    crowd = drawn_region(8, 10, slice(5, 8), slice(0, 3))
    corner = drawn_region(8, 10, slice(0, 2), slice(7, 10))
    compressed = coco_mask.encode(np.asfortranarray(crowd))["counts"].decode()
    document = {
        "images": [{"id": 1, "file_name": "a.png", "width": 10, "height": 8},
                   {"id": 2, "file_name": "b.png", "width": 5, "height": 5}],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 5, "bbox": [2, 1, 4, 3], "iscrowd": 0,
             "segmentation": RECTANGLE + [[0, 0, 1, 1]]},  # a 2-point polygon, as COCO has a few: dropped
            {"id": 12, "image_id": 1, "category_id": 9, "bbox": [0, 5, 3, 3], "iscrowd": 1,
             "segmentation": {"size": [8, 10], "counts": compressed}},
            {"id": 13, "image_id": 1, "category_id": 9, "bbox": [7, 0, 3, 2], "iscrowd": 0,
             "segmentation": {"size": [8, 10], "counts": run_lengths(corner)}}],
        "categories": [{"id": 5, "name": "cat"}, {"id": 9, "name": "dog"}]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # pycocotools' decode under NumPy 2
        polygon = coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(RECTANGLE, 8, 10)))
    expected = {"polygon": polygon, "crowd": crowd, "corner": corner}
    return write(tmp_path / "ann.json", json.dumps(document)), expected


def test_coco_polygons_and_rle_become_the_masks_drawn(coco_segments, tmp_path):
    path, expected = coco_segments
    data = f"coco:{path},{tmp_path / 'imgs'}"
    result = load_segmentation_data(data, "instance", val_fraction=0)
    assert result.classes == ["cat", "dog"]
    a, b = result.splits["train"]
    assert a.segments[0] == RECTANGLE and a.crowd.tolist() == [False, True, False] and b.segments == []
    masks = instance_masks(a)
    assert masks.shape == (3, 8, 10) and instance_masks(b).shape == (0, 5, 5)
    np.testing.assert_array_equal(masks[0], expected["polygon"])
    np.testing.assert_array_equal(masks[1], expected["crowd"])
    np.testing.assert_array_equal(masks[2], expected["corner"])
    assert 8 <= expected["polygon"].sum() <= 20  # about the 4x3 rectangle, whatever COCO's edge rule
    assert load_detection_data(data, val_fraction=0).splits["train"][0].segments is None  # detection: boxes only


def test_coco_semantic_paints_background_classes_and_crowd(coco_segments, tmp_path):
    path, expected = coco_segments
    result = load_segmentation_data(f"coco:{path},{tmp_path / 'imgs'}", "semantic", val_fraction=0)
    assert result.classes == ["background", "cat", "dog"]
    painted = read_labels(result.splits["train"][0], 3)
    want = np.zeros((8, 10), np.uint8)
    want[expected["polygon"] == 1] = 1  # cat (class 0) -> 1
    want[expected["crowd"] == 1] = IGNORE_INDEX
    want[expected["corner"] == 1] = 2  # dog (class 1) -> 2
    np.testing.assert_array_equal(painted, want)


@pytest.mark.parametrize("segmentation, expected", [
    ([[2, 1, 6, 1, 6]], "annotation id 11: segmentation polygon 0 is not a list of x, y pixel pairs"),
    ([[2, 1, 6, "1", 6, 4]], "annotation id 11: segmentation polygon 0 is not a list of x, y pixel pairs"),
    ([[0, 0, 1, 1]], "annotation id 11: segmentation has no polygon of 3 or more points"),
    ({"size": [10, 8], "counts": [80]}, "annotation id 11: segmentation RLE size [10, 8] is not the image's"),
    ({"size": [8, 10], "counts": [3, 5]}, "annotation id 11: segmentation RLE counts are malformed"),
    ({"size": [8, 10], "counts": "0?"}, "annotation id 11: segmentation RLE counts are malformed"),
    (None, "annotation id 11: no segmentation"),
    ("polygon", "annotation id 11: segmentation must be polygons"),
])
def test_malformed_coco_segmentation_names_json_and_annotation(coco_segments, tmp_path, segmentation, expected):
    path, _ = coco_segments
    document = json.loads(path.read_text())
    document["annotations"][0]["segmentation"] = segmentation
    path.write_text(json.dumps(document))
    data = f"coco:{path},{tmp_path / 'imgs'}"
    one_line_error(f"ann.json: {expected}", data=data, kind="instance")
    kept = skipped_warning(1, expected, data=data, kind="instance").splits["train"]
    assert [Path(item.image).name for item in kept] == ["b.png"]  # the image with the bad annotation is skipped
    assert len(load_detection_data(data).splits["train"]) == 1  # detection does not read segmentation


@pytest.fixture
def yolo_polygons(tmp_path) -> Path:
    write_image(tmp_path / "ds/images/train/a.png", 20, 10)
    write_image(tmp_path / "ds/images/train/bg.png", 20, 10)
    # a triangle with corners (2, 1), (12, 1), (2, 9) px: area 40 px; a square (14..18, 2..8): area 24 px
    write(tmp_path / "ds/labels/train/a.txt", "1 0.1 0.1 0.6 0.1 0.1 0.9\n0 0.7 0.2 0.9 0.2 0.9 0.8 0.7 0.8\n")
    return write(tmp_path / "ds/data.yaml", "train: images/train\nnames: [square, triangle]\n")


def test_yolo_polygons_to_pixels_boxes_and_masks(yolo_polygons):
    result = load_segmentation_data(str(yolo_polygons), "instance", val_fraction=0)
    a, bg = result.splits["train"]
    np.testing.assert_allclose(a.segments[0][0], [2, 1, 12, 1, 2, 9], atol=1e-4)
    np.testing.assert_allclose(a.boxes, [[2, 1, 12, 9], [14, 2, 18, 8]], atol=1e-4)
    assert a.labels.tolist() == [1, 0] and bg.segments == []
    areas = instance_masks(a).sum(axis=(1, 2))
    assert abs(areas[0] - 40) <= 8 and abs(areas[1] - 24) <= 6, areas  # rasterised edges: roughly the area
    detection = load_detection_data(str(yolo_polygons), val_fraction=0).splits["train"][0]
    np.testing.assert_allclose(detection.boxes, a.boxes)
    assert detection.segments is None
    semantic = load_segmentation_data(str(yolo_polygons), "semantic", val_fraction=0)
    assert semantic.classes == ["background", "square", "triangle"]
    assert set(np.unique(read_labels(semantic.splits["train"][0], 3)).tolist()) == {0, 1, 2}


@pytest.mark.parametrize("line, expected", [
    ("0 0.5 0.5 0.2 0.2", "a.txt:2: a box 'class cx cy w h', but segmentation needs the object's outline"),
    ("0 0.1 0.1 0.6 0.1 0.1", "a.txt:2: expected a polygon 'class x1 y1 x2 y2 x3 y3 ...' (an odd count of 7 or "
                              "more fields), found 6 fields"),
    ("0 0.1 0.1 0.6 0.1 0.1 0.9 0.3", "found 8 fields"),
    ("0 0.1 0.1 1.6 0.1 0.1 0.9", "a.txt:2: box x1,y1,x2,y2 = 2, 1, 32, 9 px lies outside the 20x10 image"),
])
def test_bad_yolo_polygons_name_file_and_line(yolo_polygons, line, expected):
    label_file = yolo_polygons.parent / "labels/train/a.txt"
    write(label_file, "1 0.1 0.1 0.6 0.1 0.1 0.9\n" + line + "\n")
    one_line_error(expected, data=str(yolo_polygons), kind="instance")
    kept = skipped_warning(1, expected, data=str(yolo_polygons), kind="instance").splits["train"]
    assert [Path(item.image).stem for item in kept] == ["bg"]
    if "box 'class" in expected:
        assert len(load_detection_data(str(yolo_polygons), val_fraction=0).splits["train"][0].boxes) == 2
    elif "fields" in expected:
        with pytest.raises(FovealError, match="a.txt:2: expected 5 fields 'class cx cy w h', found"):
            load_detection_data(str(yolo_polygons))


def test_convert_keeps_outlines_as_coco(yolo_polygons, coco_segments, tmp_path):
    from foveal.data.formats import convert

    result = run_cli("detect", "convert", f"src={yolo_polygons}", f"dst=coco:{tmp_path / 'from_yolo'}", "segments=true")
    assert result.returncode == 0, result.stderr
    again = load_segmentation_data(f"coco:{tmp_path / 'from_yolo'}", "instance", val_fraction=0).splits["train"][0]
    original = load_segmentation_data(str(yolo_polygons), "instance", val_fraction=0).splits["train"][0]
    np.testing.assert_array_equal(instance_masks(again), instance_masks(original))
    document = json.loads((tmp_path / "from_yolo/train.json").read_text())
    assert [a["area"] for a in document["annotations"]] == instance_masks(original).sum(axis=(1, 2)).tolist()
    path, _ = coco_segments
    convert(f"coco:{path},{tmp_path / 'imgs'}", f"coco:{tmp_path / 'from_coco'}", segments=True)
    copied = load_segmentation_data(f"coco:{tmp_path / 'from_coco'}", "instance", val_fraction=0).splits["train"][0]
    assert copied.segments == load_segmentation_data(f"coco:{path},{tmp_path / 'imgs'}", "instance",
                                                     val_fraction=0).splits["train"][0].segments
    with pytest.raises(FovealError, match="segments=true needs coco:FOLDER"):
        convert(str(yolo_polygons), f"yolo:{tmp_path / 'x'}", segments=True)


def test_coco_writer_encodes_in_memory_masks_as_rle(tmp_path):
    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.formats.coco import write_coco

    masks = np.zeros((2, 6, 8), bool)
    masks[0, 1:4, 2:6], masks[1, 4:, :3] = True, True
    pixels = np.zeros((6, 8, 3), np.uint8)
    item = ImageAnnotations("", 8, 6, np.array([[2, 1, 6, 4], [0, 4, 3, 6]], np.float32), np.array([0, 1]),
                            np.zeros(2, bool), pixels, masks)
    write_coco(DetectionData(["a", "b"], {"train": [item]}), tmp_path / "out")
    back = load_segmentation_data(f"coco:{tmp_path / 'out'}", "instance", val_fraction=0).splits["train"][0]
    assert all(isinstance(s["counts"], str) for s in back.segments)
    np.testing.assert_array_equal(instance_masks(back), masks)


def test_broken_image_is_skipped_and_windows_class_list_read(mask_set, tmp_path):
    from foveal.data.segment_dataset import SemanticDataset

    data, _ = mask_set
    classes = tmp_path / "c.txt"
    classes.write_bytes(b"\xef\xbb\xbfbg\r\nroad\r\nsky\r\n")
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (6, 6, 3), np.uint8)).save(tmp_path / "images/b.png")
    cut = (tmp_path / "images/b.png").read_bytes()[:90]  # the header reads, the pixels do not
    (tmp_path / "images/b.png").write_bytes(cut)
    one_line_error("images/b.png: not a readable image (image file is truncated", "strict=false", data=data,
                   classes=str(classes))
    result = skipped_warning(1, "images/b.png: not a readable image", data=data, classes=str(classes))
    assert result.classes == ["bg", "road", "sky"]
    assert [Path(item.image).stem for item in result.splits["train"]] == ["a", "c"]
    dataset = SemanticDataset(result.splits["train"], 3, 16)
    assert dataset[0][0].shape == (3, 16, 16)
    (tmp_path / "images/a.jpg").write_bytes(b"garbage")  # broken after reading: an error, never image c
    with pytest.raises(FovealError, match="images/a.jpg: not a readable image"):
        dataset[0]
