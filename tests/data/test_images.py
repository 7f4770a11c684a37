"""The one image reader (every PIL mode, OpenCV-only formats, EXIF rotation), and the cached decode check
that keeps unreadable files out of the data instead of swapping another image's pixels in."""

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

import foveal
from foveal.data import images
from foveal.data.classify import Transformed, load_classify_data
from foveal.data.images import CHECK_CACHE, check_images, image_size, read_image, read_pixels
from foveal.data.transforms import eval_transform
from foveal.errors import FovealError

WHITE = (255, 255, 255)


def save(path: Path, image: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return path


def palette(transparent: bool) -> Image.Image:
    """2x2 palette image: index 0 = (10, 20, 30), index 1 = (200, 100, 50) (transparent if asked)."""
    image = Image.fromarray(np.array([[0, 1], [1, 0]], np.uint8), "P")
    image.putpalette([10, 20, 30, 200, 100, 50] + [0, 0, 0] * 254)
    if transparent:
        image.info["transparency"] = 1
    return image


def rgba(alpha: int) -> Image.Image:
    return Image.new("RGBA", (3, 2), (255, 0, 0, alpha))


def exif_rotated_jpeg(path: Path) -> Path:
    """Stored 40 wide and 30 high, left half red and right half blue, with EXIF orientation 6 (turn a
    quarter clockwise to display): displayed 30 wide and 40 high, red on top."""
    pixels = np.zeros((30, 40, 3), np.uint8)
    pixels[:, :20], pixels[:, 20:] = (255, 0, 0), (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    return save(path, Image.fromarray(pixels), exif=exif, quality=95)


# (file name, how to write it, expected (H, W, 3) pixels or a check of them)
KINDS = {
    "grey.png": (lambda p: save(p, Image.new("L", (5, 3), 100)), np.full((3, 5, 3), 100)),
    "one_bit.png": (lambda p: save(p, Image.new("1", (4, 4), 1)), np.full((4, 4, 3), 255)),
    "white16.png": (lambda p: save(p, Image.fromarray(np.full((2, 3), 65535, np.uint16))), np.full((2, 3, 3), 255)),
    "ramp16.png": (lambda p: save(p, Image.fromarray(np.array([[0, 257 * 100, 65535]], np.uint16))),
                   np.array([[[0] * 3, [100] * 3, [255] * 3]])),
    "int32.tif": (lambda p: save(p, Image.fromarray(np.array([[0, 65535]], np.int32))),
                  np.array([[[0] * 3, [255] * 3]])),
    "palette.png": (lambda p: save(p, palette(False)),
                    np.array([[[10, 20, 30], [200, 100, 50]], [[200, 100, 50], [10, 20, 30]]])),
    "palette_transparent.png": (lambda p: save(p, palette(True)),
                                np.array([[[10, 20, 30], WHITE], [WHITE, [10, 20, 30]]])),
    "opaque.png": (lambda p: save(p, rgba(255)), np.full((2, 3, 3), (255, 0, 0))),
    "half_transparent.png": (lambda p: save(p, rgba(128)), np.full((2, 3, 3), (255, 127, 127))),
    "grey_alpha.png": (lambda p: save(p, Image.new("LA", (2, 2), (50, 0))), np.full((2, 2, 3), 255)),
    "cmyk.tif": (lambda p: save(p, Image.new("CMYK", (2, 2), (0, 0, 0, 0))), np.full((2, 2, 3), 255)),
    "unit_float.tif": (lambda p: save(p, Image.fromarray(np.full((2, 2), 0.5, np.float32))), np.full((2, 2, 3), 128)),
    "depth_float.tif": (lambda p: save(p, Image.fromarray(np.array([[100.0, 1100.0]], np.float32))),
                        np.array([[[0] * 3, [255] * 3]])),
    "tiny.png": (lambda p: save(p, Image.new("RGB", (1, 1), (1, 2, 3))), np.array([[[1, 2, 3]]])),
    "rotated.jpg": (exif_rotated_jpeg, None),  # checked in its own test
    # formats PIL cannot identify, read by OpenCV
    "radiance.hdr": (lambda p: cv2.imwrite(str(p), np.full((3, 4, 3), 0.5, np.float32)), np.full((3, 4, 3), 128)),
    "float_rgb.tif": (lambda p: cv2.imwrite(str(p), np.full((2, 2, 3), (0.0, 0.5, 1.0), np.float32)),
                      np.full((2, 2, 3), (255, 128, 0))),  # written B, G, R
}


@pytest.mark.parametrize("name", sorted(KINDS))
def test_every_kind_reads_as_rgb_uint8_as_displayed(tmp_path, name):
    write, expected = KINDS[name]
    path = tmp_path / name
    write(path)
    tensor = read_image(path)
    assert tensor.dtype == torch.uint8 and tensor.ndim == 3 and tensor.shape[0] == 3
    pixels = tensor.permute(1, 2, 0).numpy()
    if expected is not None:
        np.testing.assert_allclose(pixels, expected, atol=1)
    height, width = pixels.shape[:2]
    assert image_size(path) == (width, height) == check_images([path], None)[path]


def test_exif_rotation_is_applied(tmp_path):
    pixels = read_pixels(exif_rotated_jpeg(tmp_path / "r.jpg"))
    assert pixels.shape == (40, 30, 3) and image_size(tmp_path / "r.jpg") == (30, 40)
    top, bottom = pixels[:15].reshape(-1, 3).mean(0), pixels[-15:].reshape(-1, 3).mean(0)
    assert top[0] > 200 > top[2] and bottom[2] > 200 > bottom[0]  # red above blue: turned clockwise


def broken_files(folder: Path) -> list[Path]:
    """A truncated PNG (passes nothing), a truncated JPEG (passes PIL's verify()) and text named .jpg."""
    folder.mkdir(parents=True, exist_ok=True)
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    paths = []
    for name in ("truncated.png", "truncated.jpg"):
        data = save(folder / name, noise).read_bytes()
        (folder / name).write_bytes(data[:len(data) * 3 // 4])  # headers intact, pixel data cut
        paths.append(folder / name)
    (folder / "text.jpg").write_text("not an image\n")
    return paths + [folder / "text.jpg"]


def test_unreadable_files_are_one_line_errors_naming_them(tmp_path):
    for path in broken_files(tmp_path):
        with pytest.raises(FovealError) as caught:
            read_pixels(path)
        assert str(caught.value).startswith(f"{path}: not a readable image (") and "\n" not in str(caught.value)
        assert isinstance(check_images([path], None)[path], str)
    with Image.open(tmp_path / "truncated.jpg") as image:
        image.verify()  # why the check decodes: verify() finds nothing wrong here


def counting_decoder(monkeypatch) -> list:
    """Replace the decode check by one that records the files it is asked about (and still decodes)."""
    calls, real = [], images.decode_check
    monkeypatch.setattr(images, "decode_check", lambda path: calls.append(Path(path).name) or real(path))
    return calls


def test_check_is_cached_by_size_and_time_and_redone_when_a_file_changes(tmp_path, monkeypatch):
    good = save(tmp_path / "good.png", Image.new("RGB", (4, 3)))
    bad = broken_files(tmp_path)[0]
    cache = tmp_path / CHECK_CACHE
    first = check_images([good, bad], cache)
    assert first[good] == (4, 3) and "truncated" in first[bad] and cache.is_file()
    calls = counting_decoder(monkeypatch)
    assert check_images([good, bad], cache) == first and calls == []
    save(bad, Image.new("RGB", (2, 5)))  # repaired: another size and time
    assert check_images([good, bad], cache)[bad] == (2, 5) and calls == ["truncated.png"]


def test_a_folder_that_cannot_be_written_is_checked_every_time(tmp_path, monkeypatch):
    good = save(tmp_path / "good.png", Image.new("RGB", (4, 3)))

    def refuse(*args, **kwargs):
        raise PermissionError("read-only file system")

    monkeypatch.setattr(images, "write_json", refuse)
    calls = counting_decoder(monkeypatch)
    for _ in range(2):
        assert check_images([good], tmp_path / CHECK_CACHE) == {good: (4, 3)}
    assert calls == ["good.png", "good.png"] and not (tmp_path / CHECK_CACHE).exists()


def mixed_folder(root: Path) -> Path:
    """root/<class>/ with one file of each kind above, so that every class mixes every kind."""
    for class_name in ("first", "second"):
        for name, (write, _) in KINDS.items():
            (root / class_name).mkdir(parents=True, exist_ok=True)
            write(root / class_name / name)
    return root


def test_a_classification_folder_mixing_every_kind_is_indexed_read_and_trained(tmp_path):
    data = load_classify_data(str(mixed_folder(tmp_path / "mixed")), val_fraction=0.5)
    assert sum(len(split) for split in data.splits.values()) == 2 * len(KINDS)  # none skipped
    for split in data.splits.values():
        dataset = Transformed(split, eval_transform(16))
        for i in range(len(dataset)):
            image, label = dataset[i]
            assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and torch.isfinite(image).all()
            assert data.classes[label] == split.paths[i].parent.name
    run = foveal.train("classify", data=str(tmp_path / "mixed"), model="simple_cnn", epochs=1, imgsz=16, batch=8,
                       threads=1, workers=0, val_fraction=0.5, verbose=False, project=tmp_path / "runs")
    assert Path(run.best).is_file()
    predictions = foveal.predict("classify", weights=run.best, source=tmp_path / "mixed", threads=1)
    assert len(predictions) == 2 * len(KINDS)  # every kind predicts too


def test_unreadable_images_are_skipped_once_without_moving_labels(colour_folder, monkeypatch):
    broken = [*broken_files(colour_folder / "train" / "red"), *broken_files(colour_folder / "val" / "blue")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_classify_data(str(colour_folder))
    messages = [str(w.message) for w in caught]
    assert len(messages) == 1 and messages[0].startswith("skipping 6 unreadable image(s): "), messages
    assert (len(data.splits["train"]), len(data.splits["val"])) == (36, 12)
    for split in data.splits.values():
        assert not set(split.paths) & set(broken)
        assert all(data.classes[label] == path.parent.name for label, path in zip(split.labels, split.paths))
    with pytest.raises(FovealError, match=r"red/text.jpg: not a readable image \(.*\); strict=false skips"):
        load_classify_data(str(colour_folder), strict=True)
    calls = counting_decoder(monkeypatch)
    with pytest.warns(UserWarning, match="skipping 6 unreadable"):
        load_classify_data(str(colour_folder))
    assert calls == []  # every file's result came from the cache
    assert (colour_folder / CHECK_CACHE).is_file()

