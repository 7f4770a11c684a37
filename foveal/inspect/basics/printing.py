"""What `foveal basics` prints: matrices, shapes and the output-size formula with the numbers."""

from textwrap import indent

import torch

from .ops import FORMULA, formula, shape_text


def format_number(value: float, integral: bool) -> str:
    return f"{int(value)}" if integral else f"{round(value, 4) + 0.0:.4f}"  # + 0.0: no '-0.0000'


def format_matrix(matrix: torch.Tensor) -> str:
    """Rows of right-aligned numbers: integers when every value is integral, else 4 decimals."""
    integral = bool((matrix == matrix.round()).all())
    cells = [[format_number(value, integral) for value in row] for row in matrix.tolist()]
    width = max(len(cell) for row in cells for cell in row)
    return "\n".join(" ".join(cell.rjust(width) for cell in row) for row in cells)


def print_maps(result: torch.Tensor, label: str):
    """An (H, W) result as one matrix, a (maps, H, W) one as matrices named '<label> 1:', '<label> 2:' ..."""
    print(f"output {shape_text(result)}:")
    if result.ndim == 2:
        print(format_matrix(result))
    for i, matrix in enumerate(result if result.ndim == 3 else [], 1):
        print(f"{label} {i}:\n{indent(format_matrix(matrix), '  ')}")


def print_sizes(input_hw, kernel_hw, stride, pads, dilation=1):
    """FORMULA with the numbers: once when both axes agree, else for the height and for the width."""
    rows = [formula(int(n), int(k), stride, p, dilation) for n, k, p in zip(input_hw, kernel_hw, pads)]
    for label, row in zip(["size"] if rows[0] == rows[1] else ["height", "width"], rows):
        print(f"output {label} = {FORMULA} = {row}")


def num(value: float, digits: int = 6) -> str:
    """A number to `digits` significant digits, no trailing zeros: 0.593269992, 4.71, 12."""
    return f"{float(value) + 0.0:.{digits}g}"  # + 0.0: no '-0'


def factor(value: float, digits: int = 6) -> str:
    """num, in parentheses when negative, as a factor of a printed product: 0.2*37 + (-0.3)*12."""
    text = num(value, digits)
    return f"({text})" if text.startswith("-") else text
