"""Device, threads, mixed precision and seeding: the machine-dependent choices, made in one place."""

import math
import os
import random
import time

import numpy as np
import torch
from torch import nn

from ..errors import FovealError
from . import cores


class ThreadWatch:
    """For a run whose threads foveal chose (threads=0): every EVERY seconds, between training steps or
    predicted frames, the cores other processes kept busy since the last look; torch's threads follow the
    cores left free (at least 1, at most `most`). A job started beside a long run would otherwise leave both
    waiting on each other (the run's threads were chosen when the machine was quiet), or a run started on a
    busy machine would keep one thread after the machine is free."""

    EVERY = 10.0

    def __init__(self, most: int, enabled: bool, log, every: float | None = None):
        self.most, self.log, self.every = most, log, self.EVERY if every is None else every
        self.last = cores.cpu_sample() if enabled and most > 1 else None

    def check(self, where: str):
        if self.last is None or time.monotonic() - self.last.when < self.every:
            return
        now = cores.cpu_sample()
        busy = cores.busy_cores_between(self.last, now)
        self.last = now
        threads = min(self.most, max(1, cores.available_cores() - math.floor(busy + 0.5)))
        if threads != torch.get_num_threads():
            torch.set_num_threads(threads)
            self.log(f"{'busy machine' if threads < self.most else 'machine free again'}: other processes are "
                     f"using {busy:.1f} cores; {threads} thread{'s' if threads > 1 else ''} from {where}")


def select_device(name: str = "auto", local_rank: int = 0, distributed: bool = False) -> torch.device:
    """cuda, then mps, then cpu; or the one named. Under torchrun (`distributed`) each process takes
    its local rank's GPU, so `cuda:N` (one GPU for every process) is refused there."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if torch.backends.mps.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise FovealError(f"device: expected auto, cpu, cuda, cuda:N or mps, got '{name}'") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise FovealError(f"device: '{name}' asked for, but no CUDA GPU is available (use device=cpu)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise FovealError("device: 'mps' asked for, but Apple's Metal backend is not available")
    if device.type == "cuda" and distributed:
        if device.index is not None:
            raise FovealError(f"device: '{name}' would put every process on one GPU; under torchrun use "
                              "device=cuda (each process takes its local rank's GPU; CUDA_VISIBLE_DEVICES picks them)")
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def default_threads(processes_per_machine: int = 1) -> tuple[int, str]:
    """(thread count, a line to print or "") for threads=0: the cores this process may use, less those
    other processes kept busy since foveal was imported (cores.cores_busy_elsewhere), at least 1. Threads
    that outnumber the free cores wait on each other in every parallel region (an op runs as fast as its
    slowest thread): two processes on 2 cores took 1.7-3.9x their time alone with every core as threads,
    1.0-1.35x with the free ones (benchmarks/busy_machine.py). Processes of one run (torchrun, serve
    workers) split the cores between them instead."""
    count = cores.available_cores()
    if processes_per_machine > 1 or count == 1:
        return max(1, count // processes_per_machine), ""
    busy = cores.cores_busy_elsewhere()
    free = max(1, count - math.floor(busy + 0.5))
    if free == count:
        return count, ""
    return free, (f"busy machine: other processes are using {busy:.1f} of {count} cores; {free} "
                  f"thread{'s' if free > 1 else ''} (threads=N to choose)")


def configure_cpu(threads: int = 0, processes_per_machine: int = 1, log=None) -> int:
    """Set torch's thread count (`threads`, or default_threads) and flush denormals; returns the count.
    `log` receives the line that says when a busy machine made foveal take fewer threads."""
    note = ""
    if not threads:
        threads, note = default_threads(processes_per_machine)
    torch.set_num_threads(threads)
    if note and log is not None:
        log(note)
    # Tiny floats (denormals: decaying weights, Adam moments, vanishing activations) run many
    # times slower on x86; flushing them to zero costs nothing measurable (benchmarks/train_speed.py).
    torch.set_flush_denormal(True)
    return threads


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (AVX512-BF16 or AMX); elsewhere bf16 is emulated and slow."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def autocast_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `amp` (auto, off, bf16, fp16) on `device`, or None for full precision."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type == "cpu":
            raise FovealError("amp: fp16 needs a GPU; use amp=bf16 on a CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and cpu_has_native_bf16():
        return torch.bfloat16
    return None


def fp32_where_taps_see_only_padding(model: nn.Module):
    """Under CPU autocast, run each convolution of which some kernel tap sees only zero padding in fp32.

    That tap's weight gradient is exactly 0, but oneDNN's bf16 weight-gradient kernels (3.12, in torch
    2.14) leave it unwritten when the convolution is strided: uninitialised memory, often inf or NaN
    (a 3x3 stride-2 conv on a 1x1 map: resnet18's layer4 at 16 px, FCOS's P7). Kernels that skip the
    padding never read those weights again, so training looks fine while the weights file holds NaN;
    kernels that multiply the zero padding compute NaN (torch's own with oneDNN off; the likely cause
    of the NaN losses on AMX CPUs, issue 23). Only tiny maps have such taps, so fp32 costs little
    there. Stride-1 convolutions came back right on AVX512-BF16, but AMX's kernels are unseen: included.
    """
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd) and not module.transposed and module.padding_mode == "zeros":
            before, after = _fp32_hooks()
            module.register_forward_pre_hook(before)
            module.register_forward_hook(after, always_call=True)


def _fp32_hooks():
    paused = []  # the autocast `before` switched off, for `after` (called even on an error) to restore

    def before(conv, args):
        x = args[0]
        if x.device.type != "cpu" or not torch.is_autocast_enabled("cpu"):
            return None
        if not tap_sees_only_padding(conv, x.shape[-len(conv.kernel_size):]):
            return None
        paused.append(torch.autocast("cpu", enabled=False))
        paused[-1].__enter__()
        return (x.float(), *args[1:])

    def after(conv, args, output):
        if paused:
            paused.pop().__exit__(None, None, None)

    return before, after


def tap_sees_only_padding(conv: nn.modules.conv._ConvNd, size) -> bool:
    """Whether, on an input of spatial `size`, some tap of `conv`'s kernel reads zero padding only."""
    if conv.padding == "valid":
        return False
    same = conv.padding == "same"  # stride 1, the output as long as the input
    for i, length in enumerate(size):
        k, stride, dilation = conv.kernel_size[i], conv.stride[i], conv.dilation[i]
        pad = dilation * (k - 1) // 2 if same else conv.padding[i]
        out = length if same else (length + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        for tap in range(k):
            start = tap * dilation - pad  # the input row this tap reads for output 0; output o reads start + o * stride
            first = max(0, -(start // stride))  # the first output whose row is not above the input
            if first >= out or start + first * stride >= length:
                return True
    return False


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_deterministic(enabled: bool):
    """Deterministic cuDNN/cuBLAS kernels; CPU kernels already are for a fixed thread count."""
    torch.backends.cudnn.deterministic = enabled
    torch.backends.cudnn.benchmark = not enabled
    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
