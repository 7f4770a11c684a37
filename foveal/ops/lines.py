"""A counting line: which way a moving point crosses the segment x1, y1, x2, y2 (image pixels, y down)."""

import numpy as np


def line_side(points, line) -> np.ndarray:
    """(N,) -1, 0 or +1: the side of `line` each (N, 2) point is on; +1 is the right-hand side looking from
    (x1, y1) towards (x2, y2) on the screen, -1 the left, 0 on the line (the sign of the 2-D cross product)."""
    x1, y1, x2, y2 = line
    points = np.asarray(points, np.float64).reshape(-1, 2)
    return np.sign((x2 - x1) * (points[:, 1] - y1) - (y2 - y1) * (points[:, 0] - x1)).astype(np.int64)


def crossing(start, end, line) -> int:
    """+1 when a point moving from `start` to `end` crosses the segment `line` from its left to its right,
    -1 from right to left, 0 when it does not cross it. A point that lands on the line has not crossed yet:
    keep `start` at the last position off the line, so the step that leaves it to the other side counts."""
    before, after = line_side([start, end], line)
    if before == 0 or after == 0 or before == after:
        return 0
    ends = line_side([line[:2], line[2:]], (*start, *end))  # the segment's ends on both sides of the path
    return int(after) if ends[0] != ends[1] or 0 in ends else 0
