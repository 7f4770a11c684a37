"""The run report: one self-contained HTML file, images embedded, readable offline.

No JavaScript and no network: every plot is a base64 PNG data URI and the CSS is inline,
so the file can be mailed, archived or opened from a copied run folder.
"""

import base64
import numbers
import re
from dataclasses import dataclass, field
from datetime import datetime
from html import escape
from pathlib import Path

from ..files import write_bytes, write_text


@dataclass
class Table:
    columns: list[str]
    rows: list[list]  # floats are shown with 4 significant digits


@dataclass
class Section:
    heading: str
    items: list = field(default_factory=list)  # bytes (PNG), str (paragraph), Table, dict, or None (a plot not drawn)


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.45; }
header { border-bottom: 2px solid #ddd; margin-bottom: 1em; }
header p { color: #777; margin-top: 0; }
nav ol { columns: 2; }
section { margin-top: 2em; }
h2 { border-bottom: 1px solid #eee; padding-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.7em; text-align: left; }
th { background: #f4f4f4; }
tr:nth-child(even) td { background: #fafafa; }
td.number { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
"""


def _format_cell(value) -> str:
    """Escaped cell text; numpy floats count as floats too (numbers.Real, not Integral)."""
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4g}"
    return escape(str(value))


def _cell(value, tag: str = "td") -> str:
    is_number = isinstance(value, numbers.Number) and not isinstance(value, bool)
    css_class = ' class="number"' if is_number and tag == "td" else ""
    return f"<{tag}{css_class}>{_format_cell(value)}</{tag}>"


def _table_html(columns: list, rows: list[list]) -> str:
    head = "<tr>" + "".join(_cell(c, "th") for c in columns) + "</tr>" if columns else ""
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>"


def _image_html(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{escape(alt)}">'


def _item_html(item, heading: str) -> str:
    if isinstance(item, (bytes, bytearray)):
        return _image_html(bytes(item), heading)
    if isinstance(item, str):
        return f"<p>{escape(item)}</p>"
    if isinstance(item, Table):
        return _table_html(item.columns, item.rows)
    if isinstance(item, dict):
        return _table_html([], [[key, value] for key, value in item.items()])
    raise TypeError(f"a report item must be PNG bytes, str, Table or dict, not {type(item).__name__}")


def _drawn(items: list) -> list:
    """The items without the plots left undrawn (None); a section left empty says why."""
    drawn = [item for item in items if item is not None]
    return drawn if drawn or not items else ["plots not drawn (plots=false)"]


def render_report(title: str, sections: list[Section]) -> str:
    """The whole report as one HTML string."""
    generated = datetime.now().strftime("%Y-%m-%d %H:%M:%S")
    # numbered anchors, so headings with any characters link safely
    contents = "".join(f'<li><a href="#section-{i}">{escape(s.heading)}</a></li>'
                       for i, s in enumerate(sections))
    body = "".join(
        f'<section id="section-{i}"><h2>{escape(s.heading)}</h2>'
        + "".join(_item_html(item, s.heading) for item in _drawn(s.items)) + "</section>\n"
        for i, s in enumerate(sections))
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{escape(title)}</title><style>{CSS}</style></head><body>\n"
            f"<header><h1>{escape(title)}</h1><p>generated {generated} by foveal</p></header>\n"
            f"<nav><ol>{contents}</ol></nav>\n{body}</body></html>\n")


def png_name(heading: str, index: int) -> str:
    """The file name of a section's `index`th plot: 'confusion matrix (counts)' -> confusion_matrix_counts.png."""
    stem = re.sub(r"[^a-z0-9]+", "_", heading.lower()).strip("_")[:60] or "plot"
    return f"{stem}{f'_{index + 1}' if index else ''}.png"


def write_report(path, title: str, sections: list[Section], plot_files: bool = True) -> Path:
    """Write the report to `path` atomically: a reader never sees a half-written file. With `plot_files`, its
    plots are also written beside it as PNG files, where users of other tools look for them to open or paste."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(title, sections)  # first: a bad item writes nothing
    for section in sections if plot_files else []:
        plots = [item for item in section.items if isinstance(item, (bytes, bytearray))]
        for index, png in enumerate(plots):
            write_bytes(path.parent / png_name(section.heading, index), bytes(png))
    return write_text(path, html)
