"""Device, threads, mixed precision and seeding: the machine-dependent choices, made in one place."""

import os
import random

import numpy as np
import torch

from ..errors import FovealError


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


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


def configure_cpu(threads: int = 0, processes_per_machine: int = 1) -> int:
    """Use every core (shared between local processes) and flush denormals; returns the thread count."""
    count = threads or max(1, available_cores() // processes_per_machine)
    torch.set_num_threads(count)
    # Tiny floats (denormals: decaying weights, Adam moments, vanishing activations) run many
    # times slower on x86; flushing them to zero costs nothing measurable (benchmarks/train_speed.py).
    torch.set_flush_denormal(True)
    return count


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
