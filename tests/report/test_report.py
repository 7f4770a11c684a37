"""The run report: every plot is a valid PNG, and the HTML file is self-contained and escaped."""

import io
import re

import numpy as np
import pytest
from PIL import Image

from foveal.report import (Section, Table, drawing, image_grid, plot_bars, plot_confusion, plot_curves,
                           write_report)

GROUPS = [("loss", ["train_loss", "val_loss"]), ("accuracy", ["top1", "top5"]), ("learning rate", ["lr"])]


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    assert image.width > 0 and image.height > 0
    return image.size


def history(epochs: int) -> list[dict]:
    return [{"epoch": e, "train_loss": 1 / e, "val_loss": 1.2 / e, "top1": 0.5 + e / 100,
             "lr": 0.1 * 0.5 ** e} for e in range(1, epochs + 1)]


def test_curves_for_several_epochs_and_one_epoch():
    png_size(plot_curves(history(5), GROUPS))
    png_size(plot_curves(history(1), GROUPS))


def test_curves_skip_missing_keys_and_groups():
    rows = [{"epoch": 1, "train_loss": 0.9, "val_loss": ""}, {"epoch": 2, "train_loss": 0.7}]
    one_group = png_size(plot_curves(rows, GROUPS))
    three_groups = png_size(plot_curves(history(2), GROUPS))
    assert one_group[0] < three_groups[0]  # the empty accuracy and lr groups are left out
    png_size(plot_curves([], GROUPS))


@pytest.mark.parametrize("classes", [3, 60])
def test_confusion(classes):
    matrix = np.random.default_rng(0).integers(0, 20, size=(classes, classes))
    matrix[0] = 0  # a class never seen must not divide by zero
    names = [f"class_{i}" for i in range(classes)]
    png_size(plot_confusion(matrix, names))
    png_size(plot_confusion(matrix, names, normalize=False))


def test_confusion_rejects_wrong_shape():
    with pytest.raises(ValueError):
        plot_confusion(np.zeros((3, 3)), ["a", "b"])


def test_image_grid_color_and_gray():
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(5)]
    images.append(rng.integers(0, 256, (8, 8), dtype=np.uint8))
    captions = [f"cat {i}" for i in range(6)]
    png_size(image_grid(images, captions, ["green", "red"] * 3, columns=4))
    png_size(image_grid(images, captions))
    with pytest.raises(ValueError):
        image_grid(images, captions[:2])


def test_bars():
    png_size(plot_bars({"cat": 0.9, "dog": 0.75, "<b>": 0.1}, "F1 per class"))


def test_report_html(tmp_path):
    png = plot_bars({"a": 1.0}, "one")
    sections = [
        Section("Summary", ["a class named <b> is escaped", {"model": "resnet18", "top1": 0.912345}]),
        Section("Plots", [png, png]),
        Section("Per class", [Table(["class", "f1"], [["<b>", 0.123456], ["dog", 1]])]),
    ]
    path = write_report(tmp_path / "report.html", "Run <7>", sections)
    text = path.read_text(encoding="utf-8")
    assert "<title>Run &lt;7&gt;</title>" in text
    assert "a class named &lt;b&gt; is escaped" in text and "<b>" not in text
    assert len(re.findall(r'<img src="data:image/png;base64,[A-Za-z0-9+/=]+"', text)) == 2
    assert "<th>class</th><th>f1</th>" in text
    assert "<td>&lt;b&gt;</td><td class=\"number\">0.1235</td>" in text
    assert "<td>model</td><td>resnet18</td>" in text and "0.9123" in text
    assert 'href="#section-2"' in text and "<script" not in text


def test_report_replaces_file_atomically(tmp_path):
    path = tmp_path / "run" / "report.html"
    write_report(path, "first", [Section("a", ["one"])])
    write_report(path, "second", [Section("a", ["two"])])
    text = path.read_text(encoding="utf-8")
    assert "second" in text and "first" not in text
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temporary left behind


def test_report_rejects_unknown_items(tmp_path):
    with pytest.raises(TypeError):
        write_report(tmp_path / "report.html", "t", [Section("a", [3.5])])
    assert not list(tmp_path.iterdir())


def test_plots_false_keeps_the_tables_and_says_why(tmp_path):
    with drawing(False):
        undrawn = [plot_bars({"a": 1.0}, "one"), plot_curves(history(3), GROUPS), image_grid([], [])]
    assert undrawn == [None, None, None]
    assert plot_bars({"a": 1.0}, "one") is not None  # drawing again outside the block
    sections = [Section("Plots", undrawn), Section("Per class", [Table(["class"], [["dog"]]), undrawn[0]])]
    text = write_report(tmp_path / "report.html", "t", sections).read_text(encoding="utf-8")
    assert "<img" not in text and text.count("plots not drawn (plots=false)") == 1 and "<td>dog</td>" in text
