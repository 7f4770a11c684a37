"""Engine pieces on their own: extended schedules, scaler restore, per-process seeds and devices, the
check that data-parallel processes stay in sync, and the fp32 evaluation whatever `amp` trains with."""

import os
import queue

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from foveal.engine import device as device_module
from foveal.engine.device import autocast_dtype, fp32_where_taps_see_only_padding, select_device
from foveal.engine.distributed import DistInfo, check_in_sync
from foveal.engine.optim import lr_factor, planned_factor
from foveal.engine.trainer import epoch_seed, restore_scaler
from foveal.errors import FovealError


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_extending_a_finished_schedule_keeps_its_final_lr(kind):
    run = planned_factor([(0, 100)], 10, kind)
    extended = planned_factor([(0, 100), (100, 150)], 10, kind)
    assert [extended(s) for s in range(100)] == [run(s) for s in range(100)]  # the past is unchanged
    floor = run(100)  # where the finished schedule stays
    assert floor <= run(99) < floor + 1e-3
    assert all(extended(s) == pytest.approx(floor, rel=1e-9) for s in range(100, 150))  # no jump back up


@pytest.mark.parametrize("kind", ["cosine", "onecycle"])
def test_extending_mid_run_decays_smoothly_from_where_it_was(kind):
    run = planned_factor([(0, 100)], 10, kind)
    extended = planned_factor([(0, 100), (60, 200)], 10, kind)
    after = [extended(s) for s in range(60, 201)]
    assert after[0] == pytest.approx(run(60))  # continuous at the resume point
    assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))  # and only decays from there
    assert after[-1] == pytest.approx(0.01 if kind == "cosine" else 0.01 / 25, rel=1e-3)
    # a plain restart of the longer schedule would have jumped up (the bug this avoids)
    assert lr_factor(100, 200, 10, kind) > 2 * run(99)


def test_extending_twice_is_still_continuous():
    twice = planned_factor([(0, 100), (50, 150), (120, 300)], 10, "cosine")
    values = [twice(s) for s in range(300)]
    assert all(b <= a + 1e-12 for a, b in zip(values[10:], values[11:]))
    assert max(abs(b - a) for a, b in zip(values[10:], values[11:])) < 0.05


def test_step_and_constant_schedules_just_go_on():
    extended = planned_factor([(0, 100), (100, 150)], 0, "step", step_size=40, gamma=0.5)
    assert extended(120) == 0.5 ** 3
    assert planned_factor([(0, 10), (10, 20)], 0, "constant")(15) == 1.0


def test_a_scaler_resumes_from_a_run_without_one():
    fp16_here = torch.amp.GradScaler("cpu", enabled=True)
    restore_scaler(fp16_here, torch.amp.GradScaler("cpu", enabled=False).state_dict())  # saved without fp16
    assert fp16_here.get_scale() == 65536.0  # a fresh scaler, no crash
    saved = torch.amp.GradScaler("cpu", enabled=True, init_scale=1024.0)
    saved._lazy_init_scale_growth_tracker(torch.device("cpu"))
    restore_scaler(fp16_here, saved.state_dict())
    assert fp16_here.get_scale() == 1024.0
    restore_scaler(torch.amp.GradScaler("cpu", enabled=False), saved.state_dict())  # the other way round


def test_processes_augment_differently_but_reproducibly():
    seeds = {epoch_seed(0, epoch, rank) for epoch in range(50) for rank in range(8)}
    assert len(seeds) == 400
    assert epoch_seed(3, 7, 0) == 3 * 100_003 + 7  # rank 0 keeps the single-process seeds (resume of older runs)


def test_torchrun_processes_take_their_own_gpu_or_refuse_one_for_all():
    assert select_device("cpu", local_rank=1, distributed=True) == torch.device("cpu")
    if torch.cuda.is_available():
        count = torch.cuda.device_count()
        assert select_device("cuda", local_rank=1, distributed=True) == torch.device("cuda", 1 % count)
        with pytest.raises(FovealError, match="every process on one GPU"):
            select_device("cuda:0", local_rank=1, distributed=True)
    else:
        with pytest.raises(FovealError, match="no CUDA GPU"):
            select_device("cuda", local_rank=1, distributed=True)


def _sync_worker(rank: int, port: int, same: bool, failures):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.manual_seed(0 if same else rank)
    model = torch.nn.Linear(4, 3)
    try:
        check_in_sync(model, DistInfo(rank, rank, 2, 2), torch.device("cpu"))
    except RuntimeError as e:
        failures.put(str(e))
    dist.destroy_process_group()


@pytest.mark.parametrize("same", [True, False])
def test_the_sync_check_fails_when_processes_drift_apart(same):
    context = mp.get_context("spawn")
    failures = context.Queue()
    port = 29600 + same
    workers = [context.Process(target=_sync_worker, args=(rank, port, same, failures)) for rank in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(120)
    assert all(w.exitcode == 0 for w in workers)
    messages = []
    while True:
        try:
            messages.append(failures.get(timeout=1))
        except queue.Empty:
            break
    if same:
        assert messages == []
    else:
        assert len(messages) == 2 and all("not synchronised" in m for m in messages)



@pytest.mark.parametrize("native_bf16", [True, False])
def test_amp_auto_follows_the_cpu_and_forced_values_do_not(monkeypatch, native_bf16):
    monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: native_bf16)
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) == (torch.bfloat16 if native_bf16 else None)
    assert autocast_dtype("bf16", cpu) == torch.bfloat16 and autocast_dtype("off", cpu) is None
    with pytest.raises(FovealError, match="fp16 needs a GPU"):
        autocast_dtype("fp16", cpu)


def test_under_cpu_autocast_a_conv_with_padding_only_taps_runs_in_fp32():
    # a 3x3 stride-2 conv on a 1x1 map: 8 of its 9 taps see only padding, and oneDNN's bf16 weight
    # gradient leaves theirs unwritten (garbage, often NaN); the conv on the 4x4 map has no such tap
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, 1, 1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Conv2d(16, 32, 3, 2, 1), torch.nn.Flatten(), torch.nn.Linear(32, 10))
    fp32_where_taps_see_only_padding(model)
    dtypes = {}
    for index in (0, 2, 4):
        model[index].register_forward_hook(lambda module, args, out, index=index: dtypes.__setitem__(index, out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(torch.randn(4, 8, 4, 4)).float().square().mean()
        assert torch.is_autocast_enabled("cpu")  # switched back on after the fp32 conv
    loss.backward()
    assert dtypes == {0: torch.bfloat16, 2: torch.float32, 4: torch.bfloat16}  # only the tiny conv pays fp32
    grad = model[2].weight.grad.clone()
    assert grad[:, :, 1, 1].abs().sum() > 0
    grad[:, :, 1, 1] = 0
    assert torch.equal(grad, torch.zeros_like(grad))  # a tap that sees only zeros learns nothing
