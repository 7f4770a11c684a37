"""The run report: plots as PNG bytes and one self-contained HTML file per run."""

from .html import Section, Table, write_report
from .text import counted, text_table
from .plots import drawing, image_grid, plot_bars, plot_confusion, plot_curves, plot_pr_curves

__all__ = ["write_report", "drawing", "Section", "Table", "plot_curves", "plot_confusion", "image_grid", "plot_bars",
           "plot_pr_curves", "counted", "text_table"]
