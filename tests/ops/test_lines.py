"""The counting line's geometry: the side a point is on, and which way a step crosses the segment."""

import numpy as np
import pytest

from foveal.ops.lines import crossing, line_side

HORIZONTAL = (0, 50, 100, 50)  # looking from (0, 50) to (100, 50): its right-hand side is below (y down)


def test_sides_follow_the_lines_direction():
    assert line_side([(10, 40), (10, 60), (10, 50)], HORIZONTAL).tolist() == [-1, 1, 0]
    assert line_side([(10, 40), (10, 60)], (100, 50, 0, 50)).tolist() == [1, -1]  # reversed line, sides swap


@pytest.mark.parametrize("start, end, expected", [
    ((10, 40), (10, 60), 1),     # down across: left to right
    ((10, 60), (10, 40), -1),    # up across
    ((150, 40), (150, 60), 0),   # beside the segment, on its extension: not a crossing
    ((10, 40), (10, 45), 0),     # approaching, still on one side
    ((10, 40), (10, 50), 0),     # landing on the line: not yet
    ((-10, 40), (10, 60), 1),    # diagonal across the segment's first end region
    ((90, 0), (120, 100), 0),    # passes x = 100 + beyond the end at y = 50 (x = 105): misses
])
def test_crossing(start, end, expected):
    assert crossing(start, end, HORIZONTAL) == expected


def test_crossing_a_slanted_line_matches_segment_intersection():
    rng = np.random.default_rng(0)
    line = (10, 20, 80, 90)
    for start, end in rng.uniform(0, 100, (200, 2, 2)):
        sides = line_side([start, end], line)
        # independent check: solve start + t (end - start) = a + u (b - a) for t, u in [0, 1]
        a, b = np.array(line[:2], float), np.array(line[2:], float)
        matrix = np.column_stack([end - start, a - b])
        if abs(np.linalg.det(matrix)) < 1e-9:
            continue
        t, u = np.linalg.solve(matrix, a - start)
        crosses = 0 <= t <= 1 and 0 <= u <= 1 and sides[0] * sides[1] < 0
        assert crossing(start, end, line) == (int(sides[1]) if crosses else 0)
