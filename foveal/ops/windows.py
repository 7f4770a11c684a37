"""Sliding windows over an image too large for one pass (segment and restore predict)."""


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Start offsets of windows covering 0..length, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]
