"""The data loaders the engine feeds every task's datasets through.

Training items travel as (epoch, index) pairs: EpochItems seeds torch's RNG from (seed, epoch, index)
for each item, and tells a dataset with `set_epoch` which epoch it is in (detection turns mosaic off
for the last epochs so). An item is then augmented the same way whatever the number of worker
processes and whichever takes it, a resumed epoch sees the same items, and the workers can live across
epochs (no start-up each epoch): nothing they need is changed in the main process.
"""

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Sampler

from .cores import available_cores


def item_seed(seed: int, epoch: int, index: int) -> int:
    return ((seed * 100_003 + epoch) * 1_000_003 + index) % 2**63


class EpochItems(Dataset):
    """items[(epoch, i)] = dataset[i] drawn with torch's RNG seeded by (seed, epoch, i); the caller's RNG
    state is kept (in the main process it drives dropout)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.epoch = dataset, seed, None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        if epoch != self.epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self.epoch = epoch
        # the CPU generator alone: torch.manual_seed also visits every device's, 40x slower per item
        rng = torch.default_generator
        state = rng.get_state()
        rng.manual_seed(item_seed(self.seed, epoch, index))
        try:
            return self.dataset[index]
        finally:
            rng.set_state(state)


class EpochSampler(Sampler):
    """(epoch, index) pairs in the order of `sampler`, which set_epoch re-seeds for each epoch (its own
    `generator`, or a DistributedSampler's set_epoch)."""

    def __init__(self, sampler, generator: torch.Generator | None = None):
        self.sampler, self.generator, self.epoch = sampler, generator, 0

    def set_epoch(self, epoch: int, seed: int):
        self.epoch = epoch
        if self.generator is not None:
            self.generator.manual_seed(seed)
        if hasattr(self.sampler, "set_epoch"):
            self.sampler.set_epoch(epoch)

    def __iter__(self):
        return ((self.epoch, index) for index in self.sampler)

    def __len__(self):
        return len(self.sampler)


def make_loader(task, split: str, train: bool, cfg, device, dist_info, workers: int) -> DataLoader:
    """Training: shuffled (epoch, index) pairs (see the module docstring), call sampler.set_epoch before
    each epoch. Evaluation: in order, in the dataset's shape_batches where it has them."""
    dataset = task.dataset(split, train)
    common = {"num_workers": workers, "collate_fn": task.collate, "pin_memory": device.type == "cuda",
              "persistent_workers": workers > 0}
    if not train:
        if hasattr(dataset, "shape_batches"):  # batches of one shape each (rectangular letterbox)
            return DataLoader(dataset, batch_sampler=dataset.shape_batches(cfg.batch), **common)
        return DataLoader(dataset, batch_size=cfg.batch, **common)
    shuffle = torch.Generator()
    order = (DistributedSampler(dataset, shuffle=True, seed=cfg.seed) if dist_info.enabled
             else RandomSampler(dataset, generator=shuffle))
    # the loader's own generator: the worker seeds it draws must not move the shuffle's or the model's RNG
    return DataLoader(EpochItems(dataset, cfg.seed), batch_size=cfg.batch, sampler=EpochSampler(order, shuffle),
                      drop_last=len(dataset) > cfg.batch, generator=torch.Generator(), **common)


def data_workers(cfg, task, dist_info, device) -> int:
    """Data-loading processes (`workers=-1`): none for data already in memory; on a GPU, this process's
    cores but one (the one feeding the GPU), at most 8; on the CPU, whose cores also train, one per 8
    cores, the rest left to torch's threads. There a detection image costs about a fifth of its training
    step in loading and augmenting, and on 2 cores yolo_n trains 1.6x faster with no worker than with 1
    or 2 (benchmarks/detect_speed.py --loader); simple_cnn on 64 px PNG folders 1.15x."""
    if cfg.workers >= 0:
        return cfg.workers
    if task.in_memory():
        return 0
    cores = max(1, available_cores() // dist_info.local_world_size)
    return min(8, cores - 1 if device.type != "cpu" else cores // 8)
