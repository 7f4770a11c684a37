"""Console wording: tables aligned in columns, counts with their noun in the right number."""

import numbers

from .html import Table


def counted(count: int, noun: str, plural: str = "") -> str:
    """'1 detection', '0 detections', '3 detections' ('series' keeps its form: plural=noun)."""
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _text(value) -> str:
    if isinstance(value, numbers.Real) and not isinstance(value, numbers.Integral):
        return f"{float(value):.4f}"
    return str(value)


def text_table(table: Table) -> str:
    """The table as aligned text lines: the first column (names) left, the numbers right-aligned."""
    lines = [[str(c) for c in table.columns], *([_text(v) for v in row] for row in table.rows)]
    widths = [max(len(line[k]) for line in lines) for k in range(len(table.columns))]
    return "\n".join("  ".join(cell.ljust(width) if k == 0 else cell.rjust(width)
                               for k, (cell, width) in enumerate(zip(line, widths))).rstrip() for line in lines)
