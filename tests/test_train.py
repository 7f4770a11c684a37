"""The engine end to end on small real data: it learns, resumes exactly, stops early, saves safely."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import foveal
from foveal.engine.checkpoint import load_train_state, read_weights_meta
from foveal.errors import FovealError

from .conftest import QUICK


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_simple_cnn_learns_digits(tmp_path):
    result = foveal.train("classify", **QUICK, epochs=3, project=tmp_path)
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert result.metrics["top1"] > 0.8  # chance is 0.1
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "last.safetensors", "best.safetensors", "train_state.pt", "report.html"):
        assert (run / name).is_file(), name
    rows = read_rows(run / "metrics.csv")
    assert {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "seconds"} <= set(rows[0])
    meta = read_weights_meta(run / "best.safetensors")
    assert meta["model"] == "simple_cnn" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["imgsz"] == 16 and meta["epoch"] == max(range(1, 4), key=lambda e: history[e - 1]["top1"])
    # the best weights reproduce the reported numbers through `val`
    again = foveal.val("classify", weights=result.best, project=tmp_path, verbose=False)
    assert again.metrics["top1"] == pytest.approx(result.metrics["top1"])


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    args = {**QUICK, "epochs": 4}
    reference = foveal.train("classify", **args, project=tmp_path, name="reference")

    words = [f"{k}={v}" for k, v in {**args, "project": tmp_path, "name": "killed"}.items()]
    proc = subprocess.Popen([sys.executable, "-m", "foveal", "classify", "train", *words],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "classify" / "killed" / "train_state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done = load_train_state(state)["epoch"]
    assert 1 <= done < 4

    resumed = foveal.train("classify", resume=tmp_path / "classify" / "killed", verbose=False)
    assert len(resumed.history) == 4
    for ours, theirs in zip(resumed.history, reference.history):
        for key in ("train_loss", "val_loss", "top1", "top5", "lr"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), (ours["epoch"], key)


def test_resume_extends_epochs_and_refuses_other_changes(tmp_path):
    first = foveal.train("classify", **QUICK, epochs=1, project=tmp_path)
    with pytest.raises(FovealError, match="already finished 1 epochs"):
        foveal.train("classify", resume=first.run_dir)
    with pytest.raises(FovealError, match="cannot change lr"):
        foveal.train("classify", resume=first.run_dir, epochs=2, lr=0.1)
    longer = foveal.train("classify", resume=first.run_dir, epochs=2, verbose=False)
    assert [r["epoch"] for r in longer.history] == [1, 2]
    assert len(read_rows(first.run_dir / "metrics.csv")) == 2


def test_early_stopping(tmp_path):
    # lr=0 cannot improve after the first epoch, so patience=1 stops at epoch 2 of 5
    result = foveal.train("classify", **QUICK, epochs=5, lr=0.0, patience=1, project=tmp_path)
    assert len(result.history) == 2


@pytest.mark.parametrize("options", [
    {"optimizer": "sgd", "lr": 0.05, "scheduler": "step", "step_epochs": 1, "ema": True, "ema_decay": 0.9},
    {"scheduler": "onecycle", "label_smoothing": 0.1, "clip_grad": 1.0, "channels_last": False},
    {"amp": "bf16", "model": "cifar_resnet20", "hflip": 0.5, "rotate": 10, "auto_augment": "trivialaugment"},
])
def test_engine_options_run_and_learn(tmp_path, options):
    result = foveal.train("classify", **{**QUICK, **options}, epochs=2, project=tmp_path)
    assert result.metrics["top1"] > 0.3  # well above chance (0.1) after two short epochs


def test_seed_makes_runs_repeatable(tmp_path):
    a = foveal.train("classify", **QUICK, epochs=1, seed=3, project=tmp_path)
    b = foveal.train("classify", **QUICK, epochs=1, seed=3, project=tmp_path)
    c = foveal.train("classify", **QUICK, epochs=1, seed=4, project=tmp_path)
    assert a.history[0]["train_loss"] == b.history[0]["train_loss"] != c.history[0]["train_loss"]


def test_two_process_data_parallel_with_torchrun(tmp_path):
    words = [f"{k}={v}" for k, v in {**QUICK, "epochs": 2, "project": tmp_path, "name": "ddp"}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           "--master_port=29517", "-m", "foveal", "classify", "train", *words],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = read_rows(tmp_path / "classify" / "ddp" / "metrics.csv")
    assert len(rows) == 2 and float(rows[-1]["top1"]) > 0.5
    state = load_train_state(tmp_path / "classify" / "ddp" / "train_state.pt")
    # each process saw half of each epoch: 1437 images / (2 x 64) = 11 steps per epoch
    assert state["scheduler"]["last_epoch"] == 2 * (1437 // 2 // 64)
    assert torch.isfinite(torch.tensor(float(rows[-1]["train_loss"])))
