"""Plots for the run report: pure functions that return PNG bytes.

Each figure is a `matplotlib.figure.Figure` drawn by the Agg canvas directly, never through
pyplot: pyplot keeps global state (not thread-safe) and may try to open a window.
"""

import contextlib
import contextvars
import functools
import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colorbar import ColorbarBase
from matplotlib.colors import ListedColormap, Normalize
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 100
MAX_ANNOTATED_CLASSES = 20  # above this, numbers in confusion cells are unreadable
MAX_TICK_LABELS = 40  # above this, only every k-th class name is shown


_drawing = contextvars.ContextVar("drawing", default=True)


@contextlib.contextmanager
def drawing(on: bool):
    """Inside `with drawing(False)` (the `plots=false` key) every plot below returns None and the
    report keeps its tables: rendering is most of the time a report takes, seconds a run."""
    token = _drawing.set(on)
    try:
        yield
    finally:
        _drawing.reset(token)


def _skipped_when_off(plot):
    @functools.wraps(plot)
    def plot_or_none(*args, **kwargs):
        return plot(*args, **kwargs) if _drawing.get() else None
    return plot_or_none


def _png_bytes(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)  # attaches itself to fig, so savefig renders with Agg
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def _message_png(text: str) -> bytes:
    """A small figure that says why there is no plot, so a report never breaks on empty data."""
    fig = Figure(figsize=(4, 1), layout="constrained")
    fig.text(0.5, 0.5, text, ha="center", va="center")
    return _png_bytes(fig)


def _series(history: list[dict], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) of the rows that hold `key`; empty CSV cells count as missing."""
    points = [(float(row["epoch"]), float(row[key])) for row in history
              if row.get(key) not in (None, "")]
    return [e for e, _ in points], [v for _, v in points]


@_skipped_when_off
def plot_curves(history: list[dict], groups: list[tuple[str, list[str]]]) -> bytes:
    """One subplot per (title, keys) group, a line per key against epoch; missing keys are skipped.

    history: the per-epoch rows of metrics.csv, e.g. [{'epoch': 1, 'train_loss': 0.9, 'lr': 0.1}].
    """
    present = [(title, [k for k in keys if _series(history, k)[0]]) for title, keys in groups]
    present = [(title, keys) for title, keys in present if keys]
    if not present:
        return _message_png("no metrics to plot yet")
    fig = Figure(figsize=(4.2 * len(present), 3.2), layout="constrained")
    for ax, (title, keys) in zip(fig.subplots(1, len(present), squeeze=False)[0], present):
        for key in keys:
            ax.plot(*_series(history, key), marker="o", markersize=3, label=key)
        values = [v for key in keys for v in _series(history, key)[1]]
        if min(values) > 0 and max(values) > 10 * min(values):
            ax.set_yscale("log")  # learning-rate schedules span decades
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set(title=title, xlabel="epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return _png_bytes(fig)


def _row_normalized(matrix: np.ndarray) -> np.ndarray:
    totals = matrix.sum(axis=1, keepdims=True)
    return np.divide(matrix, totals, out=np.zeros(matrix.shape), where=totals > 0)


def _set_class_ticks(ax, class_names: list[str]) -> None:
    step = math.ceil(len(class_names) / MAX_TICK_LABELS)
    positions = list(range(0, len(class_names), step))
    labels = [class_names[i] for i in positions]
    size = 9 if step == 1 and len(class_names) <= MAX_ANNOTATED_CLASSES else 7
    ax.set_xticks(positions, labels, rotation=90, fontsize=size)
    ax.set_yticks(positions, labels, fontsize=size)


def _annotate_cells(ax, values: np.ndarray, normalize: bool) -> None:
    threshold = values.max() / 2  # white text on dark cells
    for (row, col), value in np.ndenumerate(values):
        text = f"{value:.2f}" if normalize else f"{int(value)}"
        ax.text(col, row, text, ha="center", va="center", fontsize=8,
                color="white" if value > threshold else "black")


@_skipped_when_off
def plot_confusion(matrix: np.ndarray, class_names: list[str], normalize: bool = True) -> bytes:
    """Heatmap of a confusion matrix (C, C): rows are true classes, columns predicted ones.

    normalize=True shows each row as rates (recall on the diagonal) instead of counts.
    """
    matrix = np.asarray(matrix, dtype=float)
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"confusion matrix of shape {matrix.shape} for {len(class_names)} classes")
    values = _row_normalized(matrix) if normalize else matrix
    side = min(max(3 + 0.4 * len(class_names), 5), 16)
    fig = Figure(figsize=(side + 1, side), layout="constrained")
    ax = fig.add_subplot()
    vmax = 1 if normalize else max(values.max(), 1)
    image = ax.imshow(values, cmap="Blues", vmin=0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, shrink=0.8, label="rate" if normalize else "count")
    _set_class_ticks(ax, class_names)
    if len(class_names) <= MAX_ANNOTATED_CLASSES:
        _annotate_cells(ax, values, normalize)
    title = "confusion matrix (rows normalised)" if normalize else "confusion matrix (counts)"
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _png_bytes(fig)


@_skipped_when_off
def image_grid(images: list[np.ndarray], captions: list[str], colors: list[str] | None = None,
               columns: int = 8) -> bytes:
    """Images (H, W, 3) or (H, W), uint8, in a grid with a caption under each, in its colour if given."""
    if len(captions) != len(images) or (colors is not None and len(colors) != len(images)):
        raise ValueError("image_grid needs one caption (and one colour, if any) per image")
    if not images:
        return _message_png("no images")
    columns = min(columns, len(images))
    rows = math.ceil(len(images) / columns)
    fig = Figure(figsize=(1.6 * columns, 1.9 * rows), layout="constrained")
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for index, ax in enumerate(axes):
        if index >= len(images):
            ax.set_axis_off()
            continue
        image = np.asarray(images[index])
        if image.ndim == 3 and image.shape[2] == 1:  # (H, W, 1) shows as grayscale
            image = image[..., 0]
        gray = {"cmap": "gray", "vmin": 0, "vmax": 255} if image.ndim == 2 else {}
        # nearest keeps tiny images (8x8 digits) crisp instead of blurred
        ax.imshow(image, interpolation="nearest", **gray)
        # an x label rather than free text, so the constrained layout leaves room for it
        ax.set_xticks([])
        ax.set_yticks([])
        ax.spines[:].set_visible(False)
        ax.set_xlabel(captions[index], fontsize=8, color=colors[index] if colors else "black")
    return _png_bytes(fig)


@_skipped_when_off
def plot_bars(values: dict[str, float], title: str) -> bytes:
    """Horizontal bars of one number per name (e.g. F1 per class), first name at the top."""
    if not values:
        return _message_png(f"{title}: no values")
    names, numbers = list(values), [float(v) for v in values.values()]
    fig = Figure(figsize=(6, min(max(1 + 0.25 * len(names), 2.5), 24)), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.barh(range(len(names)), numbers, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=8 if len(names) > 30 else 9)
    ax.invert_yaxis()
    if len(names) <= 40:
        ax.bar_label(bars, fmt="%.3g", fontsize=7, padding=2)
        ax.margins(x=0.08)  # room for the label of the longest bar
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _png_bytes(fig)


@_skipped_when_off
def plot_pr_curves(recall: np.ndarray, precision: dict[str, np.ndarray], title: str = "precision-recall") -> bytes:
    """One precision-recall curve per class (precision sampled at `recall`), plus their mean in bold.

    Classes with no data (COCO marks them with -1) are left out.
    """
    curves = {name: p for name, p in precision.items() if np.all(p >= 0)}
    if not curves:
        return _message_png("no precision-recall data")
    fig = Figure(figsize=(5.5, 4.2), layout="constrained")
    ax = fig.subplots()
    for name, p in curves.items():
        ax.plot(recall, p, linewidth=1, alpha=0.7, label=name if len(curves) <= 15 else None)
    ax.plot(recall, np.mean(list(curves.values()), axis=0), color="black", linewidth=2.5, label="mean")
    ax.set(title=title, xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    return _png_bytes(fig)


COLOUR_BAR_WIDTH = 90  # pixels right of the image: the bar and its ticks and label
COLOUR_BAR_MIN_HEIGHT = 160  # a smaller image gets white below it, so the bar stays readable


def with_colour_bar(image: np.ndarray, colours: np.ndarray, label: str, ticks: dict[float, str]) -> np.ndarray:
    """(H, W, 3) uint8 RGB `image` at its own size and pixels (not resampled), with a colour bar of the 256 RGB
    `colours` it was coloured with (values 0 to 1, `ticks` named) beside it: a (max(H, 160), W + 90, 3) image."""
    height, width = image.shape[:2]
    total_height, total_width = max(height, COLOUR_BAR_MIN_HEIGHT), width + COLOUR_BAR_WIDTH
    fig = Figure(figsize=(total_width / DPI, total_height / DPI), dpi=DPI)
    canvas = FigureCanvasAgg(fig)
    fig.figimage(image, xo=0, yo=total_height - height, origin="upper")
    bar = fig.add_axes([(width + 12) / total_width, 0.1, 14 / total_width, 0.8])
    ColorbarBase(bar, cmap=ListedColormap(np.asarray(colours) / 255), norm=Normalize(0, 1), label=label,
                 ticks=list(ticks))
    bar.set_yticklabels([f"{value:g} {name}".strip() for value, name in ticks.items()], fontsize=8)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
