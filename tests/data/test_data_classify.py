"""Classification data sources and the errors a user gets for bad ones."""

import pytest
import torch

from foveal.data.classify import load_classify_data
from foveal.errors import FovealError

from tests.conftest import write_colour_images


def test_digits_split_is_fixed_and_stratified():
    data = load_classify_data("digits")
    assert data.classes == [str(i) for i in range(10)]
    train, val = data.splits["train"], data.splits["val"]
    assert (len(train), len(val)) == (1437, 360)
    assert train.load(0).shape == (3, 32, 32) and train.load(0).dtype == torch.uint8
    assert sorted(set(val.labels)) == list(range(10))
    assert load_classify_data("digits").splits["val"].labels == val.labels
    assert data.flip_changes_class


def test_shapes_are_embedded_and_deterministic():
    a, b = load_classify_data("shapes"), load_classify_data("shapes")
    assert len(a.classes) >= 5 and set(a.splits) == {"train", "val", "test"}
    assert torch.equal(a.splits["val"].images, b.splits["val"].images)


def test_folder_with_train_and_val(colour_folder):
    data = load_classify_data(str(colour_folder))
    assert data.classes == ["blue", "green", "red"]
    assert (len(data.splits["train"]), len(data.splits["val"])) == (36, 12)
    image = data.splits["val"].load(0)
    assert image.shape == (3, 24, 24)


def test_flat_class_folders_are_split(tmp_path):
    write_colour_images(tmp_path, 10)
    data = load_classify_data(str(tmp_path), val_fraction=0.2)
    assert (len(data.splits["train"]), len(data.splits["val"])) == (24, 6)


def test_csv_paths_relative_to_the_csv(tmp_path, colour_folder):
    rows = ["path,label,split"]
    for split in ("train", "val"):
        for p in sorted((colour_folder / split).rglob("*.png")):
            rows.append(f"{p.relative_to(colour_folder)},{p.parent.name},{split}")
    (colour_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    data = load_classify_data(str(colour_folder / "labels.csv"))
    assert data.classes == ["blue", "green", "red"] and len(data.splits["val"]) == 12


@pytest.mark.parametrize("setup,message", [
    (lambda root: None, "no such file or folder"),
    (lambda root: (root / "a").mkdir(parents=True) or write_colour_images(root, 2, classes={"b": (1, 2, 3)}),
     "class folder has no images"),
    (lambda root: write_colour_images(root, 3, classes={"only": (1, 2, 3)}), "found 1 class"),
])
def test_bad_folders(tmp_path, setup, message):
    root = tmp_path / "data"
    setup(root)
    with pytest.raises(FovealError, match=message):
        load_classify_data(str(root))


def test_csv_errors_name_the_line(tmp_path, colour_folder):
    bad = colour_folder / "bad.csv"
    bad.write_text("train/red/0.png,red\ntrain/red/1.png\n")
    with pytest.raises(FovealError, match=r"bad.csv:2: expected 'path,label'"):
        load_classify_data(str(bad))
    bad.write_text("train/red/0.png,red\ntrain/red/missing.png,red\n")
    with pytest.raises(FovealError, match=r"bad.csv:2: no such image: train/red/missing.png"):
        load_classify_data(str(bad))


def test_corrupt_image_is_skipped_with_a_warning_or_refused_when_strict(colour_folder):
    corrupt = colour_folder / "train" / "red" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n this is not really a png")
    with pytest.warns(UserWarning, match="skipping 1 unreadable image.*corrupt.png"):
        data = load_classify_data(str(colour_folder))
    assert len(data.splits["train"]) == 36
    with pytest.raises(FovealError, match="corrupt.png: not a readable image"):
        load_classify_data(str(colour_folder), strict=True)


def test_val_class_missing_from_train(colour_folder):
    write_colour_images(colour_folder / "val", 2, classes={"purple": (128, 0, 128)})
    with pytest.raises(FovealError, match="purple are not in"):
        load_classify_data(str(colour_folder))


def test_an_image_broken_after_indexing_stops_with_its_name_never_another_image(colour_folder):
    source = load_classify_data(str(colour_folder)).splits["train"]
    source.paths[0].write_bytes(b"garbage")  # broken after the check
    with pytest.raises(FovealError, match=f"{source.paths[0]}: not a readable image"):
        source.load(0)
    assert source.load(1).shape == (3, 24, 24)


def csv_rows(colour_folder, splits=("train", "val")) -> list[str]:
    return ["path,label,split"] + [f"{p.relative_to(colour_folder)},{p.parent.name},{split}"
                                   for split in splits for p in sorted((colour_folder / split).rglob("*.png"))]


def test_csv_saved_on_windows_with_bom_and_crlf(colour_folder):
    text = "\r\n".join(csv_rows(colour_folder)) + "\r\n"
    (colour_folder / "labels.csv").write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    data = load_classify_data(str(colour_folder / "labels.csv"))
    assert data.classes == ["blue", "green", "red"]  # no BOM in front of a name, no \r after one
    assert (len(data.splits["train"]), len(data.splits["val"])) == (36, 12)


def test_csv_that_is_not_utf8_names_the_line_and_byte(colour_folder):
    bad = colour_folder / "bad.csv"
    bad.write_bytes("path,label\ntrain/red/0.png,r\xf6d\n".encode("cp1252"))
    with pytest.raises(FovealError, match=r"bad.csv:2: not UTF-8 text \(byte 0xf6 at byte offset 28\)"):
        load_classify_data(str(bad))


@pytest.mark.parametrize("split", ["test", "val"])
def test_csv_without_train_rows(colour_folder, split):
    rows = [row.replace(",train", f",{split}").replace(",val", f",{split}") for row in csv_rows(colour_folder)]
    (colour_folder / "labels.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(FovealError, match=f"labels.csv: no train rows \\(every row's split is {split}\\)"):
        load_classify_data(str(colour_folder / "labels.csv"))


@pytest.mark.parametrize("counts, val_fraction, expected", [
    ({"a": 5, "b": 1}, 0.2, "class 'b' has 1 image(s); splitting val_fraction=0.2 off needs at least 2 per class"),
    ({"a": 2, "b": 2, "c": 2}, 0.2, "val_fraction=0.2 of 6 images leaves 2 val image(s), fewer than the 3 classes; "
                                    "raise val_fraction"),
    ({"a": 2, "b": 2, "c": 2}, 0.9, "leaves 0 train image(s), fewer than the 3 classes; lower val_fraction"),
])
def test_class_folders_too_small_to_split_name_the_class_and_the_need(tmp_path, counts, val_fraction, expected):
    for name, count in counts.items():
        write_colour_images(tmp_path / "data", count, classes={name: (1, 2, 3)})
    with pytest.raises(FovealError) as caught:
        load_classify_data(str(tmp_path / "data"), val_fraction=val_fraction)
    message = str(caught.value)
    assert message.startswith(f"{tmp_path / 'data'}: ") and expected in message and "\n" not in message


def test_every_class_is_in_both_splits_of_a_small_folder(tmp_path):
    write_colour_images(tmp_path, 2)
    data = load_classify_data(str(tmp_path), val_fraction=0.5)
    assert sorted(data.splits["train"].labels) == sorted(data.splits["val"].labels) == [0, 1, 2]
