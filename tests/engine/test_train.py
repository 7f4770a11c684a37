"""The engine end to end on small real data: it learns, resumes exactly, stops early, saves safely."""

import csv
import signal
import subprocess
import sys
import time

import pytest
import torch

from safetensors.torch import load_file

import foveal
from foveal.engine.checkpoint import load_train_state, read_weights_meta
from foveal.errors import FovealError
from foveal.registry import create_model

from tests.conftest import QUICK


def read_rows(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.plots
@pytest.mark.parametrize("amp", ["off", "bf16"])  # forced: amp=auto would let the CPU choose
def test_simple_cnn_learns_digits(tmp_path, amp):
    result = foveal.train("classify", **QUICK, epochs=3, amp=amp, project=tmp_path)
    history = result.history
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert result.metrics["top1"] > 0.8  # chance is 0.1
    run = result.run_dir
    for name in ("config.yaml", "metrics.csv", "last.safetensors", "best.safetensors", "train_state.pt", "report.html"):
        assert (run / name).is_file(), name
    assert (run / "report.html").read_text().count("<img") == 4  # curves, confusion, F1 bars, val images
    rows = read_rows(run / "metrics.csv")
    assert {"epoch", "train_loss", "val_loss", "top1", "top5", "lr", "seconds"} <= set(rows[0])
    meta = read_weights_meta(run / "best.safetensors")
    assert meta["model"] == "simple_cnn" and meta["classes"] == [str(i) for i in range(10)]
    assert meta["imgsz"] == 16 and meta["epoch"] == max(range(1, 4), key=lambda e: history[e - 1]["top1"])
    # the best weights reproduce the numbers reported for their epoch through `val`, to the last digit
    again = foveal.val("classify", weights=result.best, project=tmp_path, verbose=False)
    best_row = history[meta["epoch"] - 1]
    for key in ("top1", "top5", "val_loss", "f1"):
        assert again.metrics[key] == best_row[key] == result.metrics[key], key


def test_bf16_training_leaves_the_padding_only_taps_alone(tmp_path):
    # resnet18 at 16 px: layer4.0.conv1 is a 3x3 stride-2 conv on 1x1 maps, so 8 of its 9 taps see only
    # zero padding and their gradient is 0; oneDNN's bf16 kernels returned garbage there (weights moved,
    # often to NaN; NaN losses on AMX CPUs). Without weight decay those taps must end where they started.
    result = foveal.train("classify", data="digits", model="resnet18", imgsz=16, epochs=1, batch=128, amp="bf16",
                          weight_decay=0, workers=0, threads=1, verbose=False, plots=False, project=tmp_path)
    weights = load_file(result.run_dir / "last.safetensors")
    assert [name for name, w in weights.items() if w.is_floating_point() and not torch.isfinite(w).all()] == []
    assert result.metrics["top1"] > 0.5  # chance is 0.1
    torch.manual_seed(0)  # fit seeds torch with seed=0 before building the model
    start = create_model("resnet18", "classify", num_classes=10, imgsz=16).state_dict()["layer4.0.conv1.weight"]
    moved = weights["layer4.0.conv1.weight"] - start
    assert moved[:, :, 1, 1].abs().max() > 1e-4  # the centre tap learned
    moved[:, :, 1, 1] = 0
    assert torch.equal(moved, torch.zeros_like(moved))


def test_killed_run_resumes_to_the_same_metrics(tmp_path):
    # EMA and patience on, killed in the middle of an epoch: the averaged weights, the best epoch and the
    # patience counter must all come back from train_state.pt
    args = {**QUICK, "epochs": 5, "ema": True, "ema_decay": 0.9, "patience": 2, "lr": 0.02, "amp": "off",
            "threads": 1}  # the killed process's own choice could differ on a busy machine
    reference = foveal.train("classify", **args, project=tmp_path, name="reference")

    words = [f"{k}={v}" for k, v in {**args, "project": tmp_path, "name": "killed"}.items()]
    proc = subprocess.Popen([sys.executable, "-m", "foveal", "classify", "train", *words],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "classify" / "killed" / "train_state.pt"
    deadline = time.time() + 300
    while not state.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)  # into the next epoch
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    done = load_train_state(state)["epoch"]
    assert 1 <= done < len(reference.history)

    resumed = foveal.train("classify", resume=tmp_path / "classify" / "killed", verbose=False)
    assert len(resumed.history) == len(reference.history)
    for ours, theirs in zip(resumed.history, reference.history):
        for key in ("train_loss", "val_loss", "top1", "top5", "lr"):
            assert ours[key] == pytest.approx(theirs[key], rel=1e-6, abs=1e-9), (ours["epoch"], key)
    ours, theirs = load_train_state(state), load_train_state(reference.run_dir / "train_state.pt")
    for key in ("epoch", "best_epoch", "best_fitness", "stopped_early"):
        assert ours[key] == theirs[key], key
    best, best_reference = load_file(resumed.best), load_file(reference.best)
    assert all(torch.allclose(best[k], best_reference[k], rtol=1e-5, atol=1e-7) for k in best)
    assert resumed.metrics == pytest.approx(reference.metrics, rel=1e-6)


def test_resume_extends_to_the_default_epochs_without_an_lr_jump(tmp_path):
    first = foveal.train("classify", **QUICK, epochs=2, project=tmp_path)
    longer = foveal.train("classify", resume=first.run_dir, epochs=10, verbose=False)  # 10 is the default
    lrs = [row["lr"] for row in longer.history]
    assert len(lrs) == 10 and lrs[:2] == [row["lr"] for row in first.history]
    assert max(lrs[2:]) <= lrs[1] * 1.0001  # the finished cosine stays at its floor: no jump back up


def test_resuming_an_early_stopped_run_says_so(tmp_path):
    stopped = foveal.train("classify", **QUICK, epochs=5, lr=1e-12, patience=1, project=tmp_path)
    assert len(stopped.history) == 2
    with pytest.raises(FovealError, match="stopped early at epoch 2"):
        foveal.train("classify", resume=stopped.run_dir)
    more_patient = foveal.train("classify", resume=stopped.run_dir, patience=3, verbose=False)
    assert len(more_patient.history) == 4  # two more epochs without improvement make three


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
    # lr=1e-12 cannot improve after the first epoch, so patience=1 stops at epoch 2 of 5
    result = foveal.train("classify", **QUICK, epochs=5, lr=1e-12, patience=1, project=tmp_path)
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


@pytest.mark.parametrize("given, expected", [(set(), (4e-3, 0.05, 16)), ({"lr", "batch"}, (1e-3, 0.05, 8)),
                                             (None, (4e-3, 0.05, 16))])
def test_a_model_brings_its_training_defaults_for_the_keys_not_given(given, expected):
    from foveal.engine.trainer import with_model_defaults
    from foveal.tasks.segment.common import SegmentConfig

    cfg, applied = with_model_defaults(SegmentConfig(model="yolo_n-seg"), "segment", given)
    assert (cfg.lr, cfg.weight_decay, cfg.batch) == expected
    assert set(applied) == {"lr", "weight_decay", "batch"} - (given or set())
    # given None (fit called without the keys typed): a value other than the config's default was set
    mine, applied = with_model_defaults(SegmentConfig(model="yolo_n-seg", lr=5e-3), "segment", None)
    assert (mine.lr, mine.batch) == (5e-3, 16) and "lr" not in applied
    unet, applied = with_model_defaults(SegmentConfig(model="unet"), "segment", set())
    assert (unet.lr, unet.batch, applied) == (1e-3, 8, {})
    retina, _ = with_model_defaults(foveal.api.config("detect", model="retinanet_resnet50_fpn"), "detect", {"model"})
    assert retina.lr == 1e-4
