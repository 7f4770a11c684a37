"""What the benchmarks share: medians of timed calls, taken one model at a time or interleaved.

A benchmark runs as a script (python benchmarks/x.py), its own folder first on sys.path: `from common import ...`.
"""

import statistics
import time


def median_seconds(step, repeats: int, warmup: int = 2) -> float:
    """Median wall seconds of `repeats` calls of step(), after `warmup` untimed ones."""
    times = []
    for i in range(repeats + warmup):
        started = time.perf_counter()
        step()
        if i >= warmup:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def interleaved_median_seconds(steps: dict, repeats: int, warmup: int = 2) -> dict:
    """{name: median seconds} of steps {name: callable} called in turn, one call of each a round: a burst
    of load from other processes falls on every step alike, so that their ratios hold on a busy machine."""
    times = {name: [] for name in steps}
    for i in range(repeats + warmup):
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            if i >= warmup:
                times[name].append(time.perf_counter() - started)
    return {name: statistics.median(seconds) for name, seconds in times.items()}
