"""The cores this process may use and how busy other processes keep them: affinity, cgroup CPU quotas and
/proc/stat, read without torch (foveal/__init__.py takes a first sample before torch is imported)."""

import math
import os
import time
from pathlib import Path
from typing import NamedTuple


def cgroup_cpu_limit(proc_cgroup="/proc/self/cgroup", root="/sys/fs/cgroup") -> float | None:
    """The CPUs a cgroup quota lets this process use (a container's `--cpus`), or None when unlimited:
    cgroup v2's cpu.max, else v1's cfs quota / period, in this process's own cgroup or at the root."""
    try:
        lines = Path(proc_cgroup).read_text().splitlines()
    except OSError:
        return None
    paths = {}  # controller -> this process's cgroup path
    for line in lines:
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else ["v2"]:
            paths[controller] = path.lstrip("/")
    candidates = [(Path(root) / paths.get("v2", ""), "cpu.max", None)]
    for folder in ("cpu", "cpu,cpuacct"):
        for base in dict.fromkeys([paths.get("cpu", ""), ""]):
            candidates.append((Path(root) / folder / base, "cpu.cfs_quota_us", "cpu.cfs_period_us"))
    for folder, quota_file, period_file in candidates:
        try:
            if period_file is None:
                quota, period = (folder / quota_file).read_text().split()
            else:
                quota, period = (folder / quota_file).read_text(), (folder / period_file).read_text()
            if quota.strip() in ("max", "-1"):
                continue
            return int(quota) / int(period)
        except (OSError, ValueError):
            continue
    return None


def available_cores() -> int:
    """The cores this process may run on: its CPU affinity, capped by a cgroup CPU quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    limit = cgroup_cpu_limit()
    return max(1, min(cores, math.floor(limit))) if limit else cores


class CpuSample(NamedTuple):
    when: float  # time.monotonic()
    busy: int  # clock ticks the process's allowed cores spent busy, since boot
    total: int  # all their ticks, idle included
    own: float  # this process's CPU seconds (every thread)


def cpu_sample() -> CpuSample | None:
    """The counters busy_cores_between compares; None where there is no /proc (macOS, Windows)."""
    try:
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
        busy = total = 0
        for line in Path("/proc/stat").read_text().splitlines():
            name, *ticks = line.split()
            if name in allowed:
                ticks = [int(t) for t in ticks[:8]]  # user nice system idle iowait irq softirq steal
                total += sum(ticks)
                busy += sum(ticks) - ticks[3] - ticks[4]
    except (AttributeError, OSError, ValueError):
        return None
    return CpuSample(time.monotonic(), busy, total, time.process_time())


def busy_cores_between(first: CpuSample | None, last: CpuSample | None) -> float:
    """How many of this process's cores other processes kept busy from `first` to `last`: the busy share of
    the cores' time, less this process's own CPU time."""
    if first is None or last is None or last.total <= first.total or last.when <= first.when:
        return 0.0
    cores = len(os.sched_getaffinity(0))
    share = (last.busy - first.busy) / (last.total - first.total)
    return max(0.0, share * cores - (last.own - first.own) / (last.when - first.when))


STARTED: CpuSample | None = None  # taken as foveal is imported (foveal/__init__.py)


def cores_busy_elsewhere(seconds: float = 0.15, recent: float = 30.0) -> float:
    """How many of this process's cores other processes keep busy: since foveal was imported, if that was
    between `seconds` and `recent` seconds ago (a second foveal started at the same moment is then busy
    importing too, where a window of sleep would have fallen on its own sleep), else over the next `seconds`."""
    now = cpu_sample()
    if STARTED is not None and now is not None and seconds <= now.when - STARTED.when <= recent:
        return busy_cores_between(STARTED, now)
    time.sleep(seconds if now is not None else 0)
    return busy_cores_between(now, cpu_sample())
