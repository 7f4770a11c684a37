"""Multi-process data-parallel training, as launched by `torchrun` (gloo on CPU, nccl on CUDA).

Without torchrun's environment everything here is a no-op for a single process.
"""

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_environment() -> DistInfo:
    env = os.environ
    if int(env.get("WORLD_SIZE", "1")) <= 1:
        return DistInfo()
    return DistInfo(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]),
                    int(env.get("LOCAL_WORLD_SIZE", env["WORLD_SIZE"])))


def init(info: DistInfo, device: torch.device):
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")


def shutdown():
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(value, info: DistInfo):
    """Rank 0's value of any picklable object, on every rank."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo):
    if info.enabled:
        dist.barrier()


def average(value: float, info: DistInfo, device: torch.device) -> float:
    """The mean of `value` over all ranks."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.item() / info.world_size


def check_in_sync(model: torch.nn.Module, info: DistInfo, device: torch.device):
    """Raise if the processes' weights differ, which means their gradients were not averaged.

    Data parallelism keeps every copy of the model identical to the bit; one sum per parameter tensor,
    gathered from every process, is a cheap check that it really does.
    """
    if not info.enabled:
        return
    with torch.no_grad():
        sums = torch.stack([p.detach().double().sum() for p in model.parameters()]).to(device)
    gathered = [torch.empty_like(sums) for _ in range(info.world_size)]
    dist.all_gather(gathered, sums)
    if not all(torch.equal(gathered[0], other) for other in gathered[1:]):
        raise RuntimeError("the processes' weights differ: gradients were not synchronised between them")
