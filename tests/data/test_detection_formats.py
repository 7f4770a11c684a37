"""YOLO / COCO / VOC readers and writers on tiny hand-made data sets, with hand-computed boxes."""

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from foveal.data.formats import convert, load_detection_data, read_detection_data
from foveal.errors import FovealError

# YOLO labels of the fixture and the boxes they mean, worked out by hand:
# a.png 40x30: "0 0.5 0.5 0.5 0.4"  -> centre (20, 15), size 20x12 -> (10, 9, 30, 21)
#              "1 0.25 0.5 0.5 1.0" -> centre (10, 15), size 20x30 -> (0, 0, 20, 30)
# b.png 20x20: "2 0.5 0.5 0.25 0.25" -> centre (10, 10), size 5x5 -> (7.5, 7.5, 12.5, 12.5)
# c.png 32x16: "1 0.25 0.25 0.5 0.5" -> centre (8, 4), size 16x8 -> (0, 0, 16, 8)
# bg.png 20x20 has no label file: a background image.
CLASSES = ["zebra", "cat", "dog"]  # not sorted, so VOC's sorted class list reorders them
EXPECTED = {"a": ([[10, 9, 30, 21], [0, 0, 20, 30]], [0, 1]), "b": ([[7.5, 7.5, 12.5, 12.5]], [2]),
            "bg": ([], []), "c": ([[0, 0, 16, 8]], [1])}


def write_png(path: Path, width: int, height: int):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (width, height), (90, 120, 200)).save(path)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def yolo_set(tmp_path) -> Path:
    root = tmp_path / "ds"
    for split, name, size in [("train", "a", (40, 30)), ("train", "b", (20, 20)), ("train", "bg", (20, 20)),
                              ("val", "c", (32, 16))]:
        write_png(root / "images" / split / f"{name}.png", *size)
    write(root / "labels/train/a.txt", "0 0.5 0.5 0.5 0.4\n1 0.25 0.5 0.5 1.0\n")
    write(root / "labels/train/b.txt", "2 0.5 0.5 0.25 0.25\n\n")
    write(root / "labels/val/c.txt", "1 0.25 0.25 0.5 0.5\n")
    return write(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\n"
                                     "names: {0: zebra, 1: cat, 2: dog}\nnc: 3\n")


def by_stem(data) -> dict:
    """{split: {image stem: (boxes, class names, crowd)}} for comparisons independent of class order."""
    return {split: {Path(item.image).stem: (item.boxes, [data.classes[i] for i in item.labels], item.crowd.tolist())
                    for item in items} for split, items in data.splits.items()}


def check_expected(data, splits=(("train", ("a", "b", "bg")), ("val", ("c",)))):
    found = by_stem(data)
    for split, stems in splits:
        assert sorted(found[split]) == list(stems)
        for stem in stems:
            boxes, names, crowd = found[split][stem]
            np.testing.assert_allclose(boxes.reshape(-1, 4), np.reshape(EXPECTED[stem][0], (-1, 4)), atol=1e-3)
            assert names == [CLASSES[i] for i in EXPECTED[stem][1]] and crowd == [False] * len(names)


def one_line_error(data: str, *expected: str, **kwargs) -> str:
    with pytest.raises(FovealError) as caught:
        load_detection_data(data, **kwargs)
    message = str(caught.value)
    assert "\n" not in message and all(part in message for part in expected), message
    return message


def skipped_warning(data: str, count: int, *expected: str):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = load_detection_data(data, strict=False, val_fraction=0)
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and f"skipped {count} " in messages[0], messages
    assert all(part in messages[0] for part in expected), messages[0]
    return result


def test_yolo_reader_normalisation_and_background(yolo_set):
    data = load_detection_data(str(yolo_set))
    assert data.classes == CLASSES
    check_expected(data)
    assert [Path(item.image).name for item in data.splits["train"]] == ["a.png", "b.png", "bg.png"]
    assert (data.splits["train"][0].width, data.splits["train"][0].height) == (40, 30)
    assert data.splits["train"][0].boxes.dtype == np.float32 and data.splits["train"][0].labels.dtype == np.int64


def test_yolo_paths_relative_to_yaml_not_cwd(yolo_set, tmp_path, monkeypatch):
    write(tmp_path / "configs/data.yaml", "path: ../ds\ntrain: images/train\nval: images/val\n"
                                          "names: [zebra, cat, dog]\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    check_expected(load_detection_data("../configs/data.yaml"))
    data = load_detection_data(f"yolo:{yolo_set.parent}")  # a folder holding data.yaml
    check_expected(data)
    assert Path(data.splits["train"][0].image).is_absolute()


def test_yolo_image_list_txt_and_missing_image(yolo_set):
    root = yolo_set.parent
    write(root / "train.txt", "./images/train/a.png\nimages/train/b.png\n")
    yolo_set.write_text("train: train.txt\nval: images/val\nnames: [zebra, cat, dog]\n")
    check_expected(load_detection_data(str(yolo_set)), (("train", ("a", "b")), ("val", ("c",))))
    write(root / "train.txt", "./images/train/a.png\n./images/train/gone.png\n")
    one_line_error(str(yolo_set), "train.txt:2: image", "gone.png not found")
    skipped_warning(str(yolo_set), 1, "train.txt:2")


def test_yolo_small_overshoot_is_clipped(yolo_set):
    write(yolo_set.parent / "labels/train/a.txt", "0 0.5 0.5 1.0005 0.4\n")
    box = load_detection_data(str(yolo_set)).splits["train"][0].boxes[0]
    np.testing.assert_allclose(box, [0, 9, 40, 21], atol=1e-4)


def test_yolo_export_rounding_is_clipped_but_far_outside_is_a_bad_label(yolo_set):
    # a.png is 40x30. x1 = 0.7515 - 0.2515 = 0.5, x2 = 1.003 (20, 40.12 px); y1 = -0.002, y2 = 0.4 (-0.06, 12 px)
    write(yolo_set.parent / "labels/train/a.txt", "0 0.7515 0.199 0.503 0.402\n")
    box = load_detection_data(str(yolo_set), strict=True).splits["train"][0].boxes[0]
    np.testing.assert_allclose(box, [20, 0, 40, 12], atol=1e-4)
    write(yolo_set.parent / "labels/train/a.txt", "0 0.5 0.5 0.5 0.4\n0 1.0 0.5 1.0 0.4\n")  # x2 = 1.5
    one_line_error(str(yolo_set), "a.txt:2: box x1,y1,x2,y2 = 20, 9, 60, 21 px lies outside the 40x30 image")
    skipped_warning(str(yolo_set), 1, "a.txt:2")
    write(yolo_set.parent / "labels/train/a.txt", "0 1.002 0.5 0.002 0.4\n")  # within the slack, but empty once clipped
    one_line_error(str(yolo_set), "a.txt:1: box has zero or negative size")


@pytest.mark.parametrize("file, text, expected", [
    ("a.txt", "0 0.5 0.5 0.5\n", "a.txt:1: expected 5 fields 'class cx cy w h', found 4"),
    ("a.txt", "0 0.5 0.5 0.5 0.4\n0 0.5 x 0.5 0.4\n", "a.txt:2: 'x' is not a number"),
    ("a.txt", "3 0.5 0.5 0.5 0.4\n", "a.txt:1: class 3 is not one of 0..2"),
    ("a.txt", "0 1.2 0.5 0.5 0.4\n", "a.txt:1: box x1,y1,x2,y2 = 38, 9, 58, 21 px lies outside the 40x30 image"),
    ("a.txt", "0 0.5 0.5 0 0.4\n", "a.txt:1: box has zero or negative size"),
    ("zz.txt", "0 0.5 0.5 0.5 0.5\n", "zz.txt: label file without an image"),
])
def test_yolo_bad_labels(yolo_set, file, text, expected):
    write(yolo_set.parent / "labels/train" / file, text)
    one_line_error(str(yolo_set), expected, "strict=false")
    data = skipped_warning(str(yolo_set), 1, expected)
    kept = [Path(item.image).stem for item in data.splits["train"]]
    assert kept == (["a", "b", "bg"] if file == "zz.txt" else ["b", "bg"])  # a bad label drops its image


def test_yolo_errors_even_when_not_strict(yolo_set):
    root = yolo_set.parent
    write(root / "labels/train/a.txt", "7 0.5 0.5 0.5 0.4\n")
    write(root / "labels/val/c.txt", "1 0.5 0.5\n")
    skipped_warning(str(yolo_set), 2, "a.txt:1", "c.txt:1")
    yolo_set.write_text("train: images/train\nval: images/nope\nnames: [zebra, cat, dog]\n")
    one_line_error(str(yolo_set), "data.yaml: val:", "nope is neither a folder", strict=False)
    yolo_set.write_text("train: images/train\nnames: [zebra, cat, dog]\nnc: 2\n")
    one_line_error(str(yolo_set), "data.yaml: nc is 2 but names lists 3 classes", strict=False)
    yolo_set.write_text("train: images/train\nnames: [zebra, cat\n")
    one_line_error(str(yolo_set), "data.yaml:", "not valid YAML", strict=False)
    one_line_error(str(root / "missing.yaml"), "no such .yaml file", "coco:ANNOTATIONS.json", "voc:")


def test_exif_rotation_swaps_size(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 40x30, displayed a quarter turn round: 30x40
    (tmp_path / "images/train").mkdir(parents=True)
    Image.new("RGB", (40, 30)).save(tmp_path / "images/train/r.jpg", exif=exif)
    write(tmp_path / "labels/train/r.txt", "0 0.5 0.5 1 1\n")
    config = write(tmp_path / "data.yaml", "train: images/train\nnames: [thing]\n")
    item = load_detection_data(str(config), val_fraction=0).splits["train"][0]
    assert (item.width, item.height) == (30, 40)
    np.testing.assert_allclose(item.boxes, [[0, 0, 30, 40]])
    from foveal.data.detect_dataset import read_rgb

    assert read_rgb(item).shape == (40, 30, 3)  # the pixels the Dataset reads agree with the boxes


def coco_document(**changes) -> dict:
    document = {
        "images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 11, "file_name": "b.png", "width": 20, "height": 20}],
        "annotations": [{"id": 1, "image_id": 10, "category_id": 7, "bbox": [10, 9, 20, 12], "iscrowd": 0},
                        {"id": 2, "image_id": 10, "category_id": 3, "bbox": [0, 0, 5, 5.5], "iscrowd": 1}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}]}
    return {**document, **changes}


@pytest.fixture
def coco_set(tmp_path) -> str:
    write_png(tmp_path / "imgs/a.png", 40, 30)
    write_png(tmp_path / "imgs/b.png", 20, 20)
    write(tmp_path / "ann.json", json.dumps(coco_document()))
    return f"coco:{tmp_path / 'ann.json'},{tmp_path / 'imgs'}"


def test_coco_reader_category_ids_and_crowd(coco_set):
    data = read_detection_data(coco_set)
    assert data.classes == ["cat", "dog"]  # sorted by category id: 3, 7
    a, b = data.splits["train"]
    np.testing.assert_allclose(a.boxes, [[10, 9, 30, 21], [0, 0, 5, 5.5]])
    assert a.labels.tolist() == [1, 0] and a.crowd.tolist() == [False, True]
    assert len(b.labels) == 0 and (b.width, b.height) == (20, 20)


def test_coco_train_val_sets_and_val_fraction(coco_set, tmp_path):
    pair = coco_set.removeprefix("coco:")
    data = load_detection_data(f"coco:{pair};{pair}")
    assert [len(data.splits[s]) for s in ("train", "val")] == [2, 2]
    for i in range(3):
        write_png(tmp_path / f"imgs/extra{i}.png", 8, 8)
    images = coco_document()["images"] + [{"id": 20 + i, "file_name": f"extra{i}.png"} for i in range(3)]
    write(tmp_path / "ann.json", json.dumps(coco_document(images=images)))
    first, again = (load_detection_data(coco_set, val_fraction=0.4) for _ in range(2))
    names = [[Path(item.image).name for item in d.splits[s]] for d in (first, again) for s in ("train", "val")]
    assert names[:2] == names[2:] and [len(n) for n in names[:2]] == [3, 2] and not set(names[0]) & set(names[1])
    assert (first.splits["train"] + first.splits["val"])[-1].width == 8  # size read from the image


@pytest.mark.parametrize("changes, expected", [
    ({"annotations": [{"id": 5, "image_id": 99, "category_id": 7, "bbox": [1, 1, 2, 2]}]},
     "ann.json: annotation id 5: unknown image_id 99"),
    ({"annotations": [{"id": 6, "image_id": 10, "category_id": 4, "bbox": [1, 1, 2, 2]}]},
     "ann.json: annotation id 6: unknown category_id 4"),
    ({"annotations": [{"id": 7, "image_id": 10, "category_id": 7, "bbox": [1, 1, 2]}]},
     "ann.json: annotation id 7: bbox must be [x, y, width, height]"),
    ({"annotations": [{"id": 8, "image_id": 10, "category_id": 7, "bbox": [30, 1, 20, 2]}]},
     "ann.json: annotation id 8: box x1,y1,x2,y2 = 30, 1, 50, 3 px lies outside the 40x30 image"),
    ({"images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
                 {"id": 11, "file_name": "gone.png", "width": 20, "height": 20}]},
     "ann.json: image id 11:"),
])
def test_coco_bad_annotations(coco_set, tmp_path, changes, expected):
    write(tmp_path / "ann.json", json.dumps(coco_document(**changes)))
    one_line_error(coco_set, expected)
    skipped_warning(coco_set, 1, expected)


def test_coco_malformed_json_is_an_error_even_when_not_strict(coco_set, tmp_path):
    write(tmp_path / "ann.json", '{\n  "images": [],\n  "annotations": [,]\n}')
    one_line_error(coco_set, "ann.json:3: malformed JSON", strict=False)
    write(tmp_path / "ann.json", '{"images": []}')
    one_line_error(coco_set, "ann.json: not COCO detection JSON", strict=False)


VOC_XML = """<annotation><filename>{filename}</filename><size><width>40</width><height>30</height></size>
<object><name>dog</name><difficult>0</difficult>
  <bndbox><xmin>11</xmin><ymin>10</ymin><xmax>30</xmax><ymax>21</ymax></bndbox></object>
<object><name>cat</name><difficult>1</difficult>
  <bndbox><xmin>1</xmin><ymin>1</ymin><xmax>{xmax}</xmax><ymax>5</ymax></bndbox></object>
</annotation>"""


@pytest.fixture
def voc_set(tmp_path) -> str:
    write_png(tmp_path / "JPEGImages/a.png", 40, 30)
    write_png(tmp_path / "JPEGImages/bg.png", 40, 30)
    write(tmp_path / "Annotations/a.xml", VOC_XML.format(filename="a.png", xmax=40))
    write(tmp_path / "Annotations/bg.xml", "<annotation><filename>bg.png</filename></annotation>")
    return f"voc:{tmp_path / 'Annotations'},{tmp_path / 'JPEGImages'}"


def test_voc_reader_one_based_and_difficult(voc_set):
    data = read_detection_data(voc_set)
    assert data.classes == ["cat", "dog"]
    a, bg = data.splits["train"]
    np.testing.assert_allclose(a.boxes, [[10, 9, 30, 21], [0, 0, 40, 5]])  # x1 = xmin - 1, x2 = xmax
    assert a.labels.tolist() == [1, 0] and a.crowd.tolist() == [False, False]  # difficult is not crowd
    assert a.difficult.tolist() == [False, True]
    assert len(bg.labels) == 0 and (bg.width, bg.height) == (40, 30)  # size read from the image


@pytest.mark.parametrize("xml, expected", [
    ("<annotation><filename>a.png</filename>\n<object><name>dog</name></annotation>",
     "a.xml:2: malformed XML"),
    (VOC_XML.format(filename="a.png", xmax=42),
     "a.xml: object 2: box x1,y1,x2,y2 = 0, 0, 42, 5 px lies outside"),
    (VOC_XML.format(filename="a.png", xmax="x"), "a.xml: object 2 xmax: 'x' is not a number"),
    (VOC_XML.format(filename="gone.png", xmax=40), "a.xml: image gone.png not found"),
])
def test_voc_bad_files(voc_set, tmp_path, xml, expected):
    if "gone" in xml:  # no gone.png, and no image named like the XML file either
        (tmp_path / "JPEGImages/a.png").rename(tmp_path / "JPEGImages/moved.png")
    write(tmp_path / "Annotations/a.xml", xml)
    one_line_error(voc_set, expected)
    assert len(skipped_warning(voc_set, 1, expected).splits["train"]) == 1


def test_voc_given_class_list(voc_set):
    from foveal.data.formats import voc

    sets = {"train": voc.folder_set(*map(Path, voc_set.removeprefix("voc:").split(",")))}
    assert voc.read_voc(sets, classes=["dog", "cat", "bird"]).splits["train"][0].labels.tolist() == [0, 1]
    with pytest.raises(FovealError, match=r"a.xml: object 1: unknown class 'dog' \(did you mean 'dot'\?\)"):
        voc.read_voc(sets, classes=["dot", "cat"])


def test_round_trip_yolo_coco_voc_yolo(yolo_set, tmp_path):
    original = by_stem(load_detection_data(str(yolo_set)))
    summary = convert(str(yolo_set), f"coco:{tmp_path / 'as_coco'}")
    assert summary == f"wrote 4 images, 4 boxes, 3 classes as COCO to {tmp_path / 'as_coco'}"
    assert (tmp_path / "as_coco/train.json").is_file() and (tmp_path / "as_coco/val/c.png").is_file()
    convert(f"coco:{tmp_path / 'as_coco'}", f"voc:{tmp_path / 'as_voc'}")
    assert (tmp_path / "as_voc/ImageSets/Main/val.txt").read_text() == "c\n"
    convert(f"voc:{tmp_path / 'as_voc'}", f"yolo:{tmp_path / 'as_yolo'}")
    final = load_detection_data(str(tmp_path / "as_yolo"))
    assert sorted(final.classes) == sorted(CLASSES)
    check_expected(final)
    for split, items in by_stem(final).items():
        for stem, (boxes, names, crowd) in items.items():
            np.testing.assert_allclose(boxes.reshape(-1, 4), original[split][stem][0].reshape(-1, 4), atol=1e-3)
            assert names == original[split][stem][1] and crowd == original[split][stem][2]


def test_convert_crowd_to_yolo_and_bad_destinations(coco_set, tmp_path):
    summary = convert(coco_set, f"yolo:{tmp_path / 'out'}", link=False)
    assert summary.endswith("(1 crowd/difficult boxes left out: YOLO cannot mark them)")
    assert (tmp_path / "out/labels/train/a.txt").read_text() == "1 0.500000 0.500000 0.500000 0.400000\n"
    with pytest.raises(FovealError, match="not an empty folder"):
        convert(coco_set, f"yolo:{tmp_path / 'out'}")
    with pytest.raises(FovealError, match="use yolo:FOLDER, coco:FOLDER or voc:FOLDER"):
        convert(coco_set, f"csv:{tmp_path / 'x'}")


def windows_text(path: Path, text: str) -> Path:
    """Write `text` as Windows tools do: a UTF-8 byte-order mark and CRLF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode("utf-8"))
    return path


def test_windows_yolo_yaml_labels_and_image_list(yolo_set):
    root = yolo_set.parent
    for label in (root / "labels").rglob("*.txt"):
        windows_text(label, label.read_text())
    windows_text(root / "train.txt", "images/train/a.png\nimages/train/b.png\nimages/train/bg.png\n")
    windows_text(yolo_set, "path: .\ntrain: train.txt\nval: images/val\nnames: {0: zebra, 1: cat, 2: dog}\nnc: 3\n")
    data = load_detection_data(str(yolo_set))
    assert data.classes == CLASSES
    check_expected(data)


def test_windows_coco_json_and_voc_lists(coco_set, tmp_path):
    json_path = tmp_path / "ann.json"
    windows_text(json_path, json.dumps(coco_document(), indent=1))
    assert by_stem(read_detection_data(coco_set))["train"]["a"][1] == ["dog", "cat"]
    root = tmp_path / "voc"
    write_png(root / "JPEGImages/a.png", 40, 30)
    windows_text(root / "Annotations/a.xml", VOC_XML.format(filename="a.png", xmax=40))
    windows_text(root / "ImageSets/Main/train.txt", "a\n")
    data = read_detection_data(f"voc:{root}")
    assert [Path(item.image).name for item in data.splits["train"]] == ["a.png"]
    assert data.splits["train"][0].labels.tolist() == [1, 0]


def test_label_file_not_utf8_names_file_line_and_byte(yolo_set):
    (yolo_set.parent / "labels/train/b.txt").write_bytes("2 0.5 0.5 0.25 0.25\n# caf\xe9\n".encode("cp1252"))
    skipped_warning(str(yolo_set), 1, "b.txt:2: not UTF-8 text (byte 0xe9 at byte offset 25)")


def truncate(path: Path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_a_broken_image_drops_just_that_image(yolo_set, monkeypatch):
    from foveal.data import images

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), np.uint8)).save(
        yolo_set.parent / "images/train/b.png")
    truncate(yolo_set.parent / "images/train/b.png")
    one_line_error(str(yolo_set), "b.png: not a readable image (", "strict=false")
    data = skipped_warning(str(yolo_set), 1, "b.png: not a readable image (")
    check_expected(data, (("train", ("a", "bg")), ("val", ("c",))))  # the others keep their own boxes
    assert (yolo_set.parent / images.CHECK_CACHE).is_file()  # beside data.yaml
    calls = []
    monkeypatch.setattr(images, "decode_check", lambda path: calls.append(path))
    skipped_warning(str(yolo_set), 1, "b.png: not a readable image (")
    assert calls == []  # the second read takes the check from the cache


def test_coco_and_voc_sizes_must_match_the_pixels(coco_set, voc_set, tmp_path):
    write_png(tmp_path / "imgs/a.png", 30, 40)  # the JSON says 40x30
    expected = "a.png: the image is 30x40 px but its annotations say 40x30"
    one_line_error(coco_set, expected)
    assert [Path(item.image).name for item in skipped_warning(coco_set, 1, expected).splits["train"]] == ["b.png"]
    truncate(tmp_path / "JPEGImages/a.png")
    assert len(skipped_warning(voc_set, 1, "JPEGImages/a.png: not a readable image").splits["train"]) == 1


def test_coco_area_is_kept_and_written_back(coco_set, tmp_path):
    annotations = coco_document()["annotations"]
    annotations[0]["area"] = 150.5  # as COCO's segment areas: not the box's 20 x 12 = 240
    write(tmp_path / "ann.json", json.dumps(coco_document(annotations=annotations)))
    a = read_detection_data(coco_set).splits["train"][0]
    assert a.areas.dtype == np.float64 and a.areas.tolist() == [150.5, 27.5]  # no area: the box's 5 x 5.5
    convert(coco_set, f"coco:{tmp_path / 'again'}")
    written = json.loads((tmp_path / "again/train.json").read_text())["annotations"]
    assert [(w["area"], w["iscrowd"]) for w in written] == [(150.5, 0), (27.5, 1)]
    convert(coco_set, f"voc:{tmp_path / 'voc'}")  # VOC keeps no area, and marks the crowd region difficult
    convert(f"voc:{tmp_path / 'voc'}", f"coco:{tmp_path / 'back'}")
    written = json.loads((tmp_path / "back/train.json").read_text())["annotations"]
    assert sorted((w["area"], w["iscrowd"]) for w in written) == [(27.5, 1), (240, 0)]
    for area, expected in [(-1, "annotation id 1: area -1 is negative"),
                           ("big", "annotation id 1: area: 'big' is not a number")]:
        annotations[0]["area"] = area
        write(tmp_path / "ann.json", json.dumps(coco_document(annotations=annotations)))
        one_line_error(coco_set, expected)


def test_voc_difficult_round_trip_and_to_coco(voc_set, tmp_path):
    convert(voc_set, f"voc:{tmp_path / 'again'}")
    a = read_detection_data(f"voc:{tmp_path / 'again'}").splits["train"][0]
    assert a.difficult.tolist() == [False, True] and a.crowd.tolist() == [False, False]
    assert "<difficult>1</difficult>" in (tmp_path / "again/Annotations/a.xml").read_text()
    convert(voc_set, f"coco:{tmp_path / 'coco'}")  # COCO has no difficult flag: iscrowd, as mmdetection writes it
    written = json.loads((tmp_path / "coco/train.json").read_text())["annotations"]
    assert [(w["category_id"], w["iscrowd"]) for w in written] == [(2, 0), (1, 1)]


def same_data(first, second):
    assert first.classes == second.classes
    assert {k: len(v) for k, v in first.splits.items()} == {k: len(v) for k, v in second.splits.items()}
    for a, b in zip((x for items in first.splits.values() for x in items),
                    (x for items in second.splits.values() for x in items)):
        assert (a.image, a.width, a.height, a.segments) == (b.image, b.width, b.height, b.segments)
        for name in ("boxes", "labels", "crowd"):
            assert getattr(a, name).dtype == getattr(b, name).dtype
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def refuse_to_parse(monkeypatch):
    from foveal.data.formats import yolo

    def refuse(*args):
        raise AssertionError("parsed again although the cache holds it")

    monkeypatch.setattr(yolo, "_parse_image", refuse)


def read_recording_warnings(yolo_set: Path, segments: bool):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = read_detection_data(str(yolo_set), strict=False, segments=segments)
    return data, [str(w.message) for w in caught]


def test_yolo_second_read_comes_from_the_label_cache(yolo_set, monkeypatch):
    from foveal.data.formats import yolo

    write(yolo_set.parent / "labels/train/b.txt", "2 0.1 0.1 0.3 0.3 0.2 0.3\n")  # a polygon
    for segments in (False, True):  # with segments, the box lines of a.png and c.png are bad labels
        first, first_warnings = read_recording_warnings(yolo_set, segments)
        with monkeypatch.context() as patched:
            refuse_to_parse(patched)
            second, second_warnings = read_recording_warnings(yolo_set, segments)
        same_data(first, second)
        assert second_warnings == first_warnings and len(first_warnings) == segments
    assert first.splits["train"][0].segments == [[[2, 2, 6, 6, 4, 6]]]
    assert (yolo_set.parent / yolo.LABEL_CACHE).is_file()  # beside data.yaml


def test_yolo_label_cache_notices_changed_added_and_removed_label_files(yolo_set):
    read_detection_data(str(yolo_set))
    a_labels = write(yolo_set.parent / "labels/train/a.txt", "1 0.5 0.5 0.5 0.4\n0 0.25 0.5 0.5 1.0\n")
    changed = a_labels.stat().st_mtime_ns + 10**9  # the same size: only the time tells
    os.utime(a_labels, ns=(changed, changed))
    write(yolo_set.parent / "labels/train/bg.txt", "2 0.5 0.5 0.25 0.25\n")
    (yolo_set.parent / "labels/train/b.txt").unlink()
    a, b, bg = read_detection_data(str(yolo_set)).splits["train"]
    assert (a.labels.tolist(), b.labels.tolist(), bg.labels.tolist()) == ([1, 0], [], [2])
    np.testing.assert_allclose(bg.boxes, EXPECTED["b"][0])


def test_yolo_label_cache_keeps_reporting_a_bad_label(yolo_set, monkeypatch):
    write(yolo_set.parent / "labels/train/a.txt", "3 0.5 0.5 0.5 0.4\n")
    one_line_error(str(yolo_set), "a.txt:1: class 3 is not one of 0..2")
    with monkeypatch.context() as patched:
        refuse_to_parse(patched)  # the error was cached although strict stopped the read there
        one_line_error(str(yolo_set), "a.txt:1: class 3 is not one of 0..2")
    skipped_warning(str(yolo_set), 1, "a.txt:1: class 3")  # reads the images after a.png too
    refuse_to_parse(monkeypatch)
    skipped_warning(str(yolo_set), 1, "a.txt:1: class 3")


@pytest.mark.parametrize("damage", ['{"version": 1, "ima', "[1, 2]", '{"version": 1, "images": {"KEY": 7}}',
                                    '{"version": 1, "images": {"KEY": [1]}}'])
def test_yolo_damaged_label_cache_is_rebuilt(yolo_set, damage):
    from foveal.data.formats import yolo

    first = read_detection_data(str(yolo_set))
    cache = yolo_set.parent / yolo.LABEL_CACHE
    cache.write_text(damage.replace("KEY", json.dumps(first.splits["train"][0].image)[1:-1]))
    same_data(first, read_detection_data(str(yolo_set)))
    assert json.loads(cache.read_text())["version"] == yolo.LABEL_CACHE_VERSION


def test_yolo_label_cache_in_a_folder_that_cannot_be_written(yolo_set, monkeypatch):
    from foveal.data import images
    from foveal.data.formats import yolo

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(images, "write_json", refuse)  # chmod would not stop root
    first = read_detection_data(str(yolo_set))
    same_data(first, read_detection_data(str(yolo_set)))
    assert not (yolo_set.parent / yolo.LABEL_CACHE).exists()
