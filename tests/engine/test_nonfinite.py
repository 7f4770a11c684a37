"""No silent NaN: a non-finite loss or gradient skips its step; under amp=auto the step is redone in fp32 and
the run falls back to fp32; a loss that stays non-finite stops the run in one line, keeping the last good
epoch; a killed save leaves a run that resumes."""

import pytest
import torch

import foveal
from foveal.engine import trainer
from foveal.engine.checkpoint import load_train_state, read_weights_meta
from foveal.errors import FovealError
from foveal.tasks.classify.task import ClassifyTask

from tests.conftest import QUICK

STEPS_PER_EPOCH = 22  # 1437 training digits in full batches of 64


def poison_loss(monkeypatch, bad_step):
    """ClassifyTask.loss gives NaN on the calls for which bad_step(call number, autocast on) is true."""
    real, calls = ClassifyTask.loss, []

    def loss(self, model, batch):
        value, items = real(self, model, batch)
        calls.append(torch.is_autocast_enabled("cpu"))
        if bad_step(len(calls), calls[-1]):
            value = value * float("nan")
            items = {k: float("nan") for k in items}
        return value, items

    monkeypatch.setattr(ClassifyTask, "loss", loss)
    return calls


def test_a_few_nan_steps_are_skipped_and_the_run_learns(monkeypatch, tmp_path, capsys):
    poison_loss(monkeypatch, lambda call, _: call in (5, 30, 31))
    result = foveal.train("classify", **{**QUICK, "verbose": True}, epochs=2, amp="off", project=tmp_path)
    assert result.metrics["top1"] > 0.6  # learned (chance: 0.1), and no NaN reached the weights
    assert all(row["train_loss"] == row["train_loss"] for row in result.history)  # the skipped losses left out
    text = capsys.readouterr().out
    assert f"epoch 1: 1 of {STEPS_PER_EPOCH} steps skipped" in text and f"epoch 2: 2 of {STEPS_PER_EPOCH} steps skipped" in text


@pytest.mark.parametrize("amp", ["off", "bf16"])  # forced: a forced amp never falls back, it stops
def test_a_loss_that_stays_nan_stops_in_one_line_keeping_the_last_good_epoch(monkeypatch, tmp_path, amp):
    poison_loss(monkeypatch, lambda call, _: call > STEPS_PER_EPOCH + 2)  # from the 3rd step of epoch 2
    with pytest.raises(FovealError) as error:
        foveal.train("classify", **QUICK, epochs=3, amp=amp, project=tmp_path, name="nan")
    message = str(error.value)
    assert "\n" not in message and "training stopped" in message and "epoch 2, step 22" in message
    assert "amp=off" in message and "lower lr" in message and "epoch 1, the last finished, is kept" in message
    run = tmp_path / "classify" / "nan"
    assert read_weights_meta(run / "last.safetensors")["epoch"] == 1
    assert read_weights_meta(run / "best.safetensors")["epoch"] == 1
    assert load_train_state(run / "train_state.pt")["epoch"] == 1
    assert not (run / "report.html").exists()  # no "best epoch" from NaN


def test_the_cli_exits_2_on_a_run_that_diverges(tmp_path):
    from tests.conftest import run_cli

    result = run_cli("classify", "train", "data=digits", "model=simple_cnn", "imgsz=16", "epochs=1", "lr=1e30",
                     "optimizer=sgd", "momentum=0", "warmup_epochs=0", f"project={tmp_path}", "workers=0")
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.count("\n") == 1 and "foveal: error: training stopped" in result.stderr
    assert "Traceback" not in result.stderr


def test_amp_auto_redoes_nan_bf16_steps_in_fp32_then_trains_on_in_fp32(monkeypatch, tmp_path, capsys):
    # as on a CPU with native bf16 whose bf16 path diverges (issue 23: AMX kernels)
    monkeypatch.setattr("foveal.engine.trainer.autocast_dtype", lambda amp, device: torch.bfloat16)
    calls = poison_loss(monkeypatch, lambda call, autocast_on: autocast_on and call > 4)
    result = foveal.train("classify", **{**QUICK, "verbose": True}, epochs=2, amp="auto", project=tmp_path)
    assert result.metrics["top1"] > 0.6
    text = capsys.readouterr().out
    assert "amp: bf16 gave a non-finite loss at 3 steps" in text and "training on in fp32" in text
    assert "skipped" not in text  # every failed step was redone
    # bf16 for the first 4 steps, then 3 failed bf16 steps each redone in fp32, then fp32 only
    assert calls[:10] == [True] * 4 + [True, False] * 3
    assert not any(calls[10:]) and len(calls) == 2 * STEPS_PER_EPOCH + 3
    assert load_train_state(result.run_dir / "train_state.pt")["amp_fell_back"] is True


def test_a_run_killed_while_saving_its_first_epoch_resumes(monkeypatch, tmp_path):
    args = {**QUICK, "epochs": 2, "amp": "off", "threads": 1}
    reference = foveal.train("classify", **args, project=tmp_path, name="reference")

    def killed(path, state):
        raise KeyboardInterrupt  # after last/best.safetensors and metrics.csv, before train_state.pt

    save_train_state = trainer.save_train_state
    monkeypatch.setattr(trainer, "save_train_state", killed)
    with pytest.raises(KeyboardInterrupt):
        foveal.train("classify", **args, project=tmp_path, name="killed")
    run = tmp_path / "classify" / "killed"
    assert (run / "metrics.csv").is_file() and not (run / "train_state.pt").exists()
    monkeypatch.setattr(trainer, "save_train_state", save_train_state)
    resumed = foveal.train("classify", resume=run, verbose=False)
    assert [row["epoch"] for row in resumed.history] == [1, 2]
    assert resumed.metrics == pytest.approx(reference.metrics, rel=1e-6)
