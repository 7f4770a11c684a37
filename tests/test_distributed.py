"""`torchrun --nproc_per_node=2` for every task, as 2 CPU processes (gloo).

The engine checks after every epoch that the processes' weights are identical to the bit (they drift
apart at once when gradients are not averaged: tests/test_engine.py shows the check failing then), so a
run that finishes here also proves that the gradients were synchronised.
"""

import csv
import os
import subprocess
import sys

import torch

from foveal.data.detection import DetectionData
from foveal.data.formats.yolo import write_yolo
from foveal.data.synthetic import SHAPE_CLASSES
from foveal.engine.checkpoint import load_train_state

from .conftest import QUICK
from .test_detect import scenes_as_items
from .test_segment import CLASSES, write_mask_set


def torchrun(task: str, port: int, tmp_path, **options) -> list[dict]:
    """Train with 2 processes; returns the rows of metrics.csv."""
    words = [f"{k}={v}" for k, v in {"amp": "off", **options, "project": tmp_path, "name": "ddp"}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                           f"--master_port={port}", "-m", "foveal", task, "train", *words],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "x2 processes" in proc.stdout
    with open(tmp_path / task / "ddp" / "metrics.csv") as f:
        return list(csv.DictReader(f))


def steps_done(tmp_path, task: str) -> int:
    return load_train_state(tmp_path / task / "ddp" / "train_state.pt")["scheduler"]["last_epoch"]


def test_classify(tmp_path):
    rows = torchrun("classify", 29517, tmp_path, **{**QUICK, "epochs": 2, "verbose": True})
    assert len(rows) == 2 and float(rows[-1]["top1"]) > 0.5
    # each process saw half of each epoch: 1437 images / (2 x 64) = 11 steps per epoch
    assert steps_done(tmp_path, "classify") == 2 * (1437 // 2 // 64)
    assert torch.isfinite(torch.tensor(float(rows[-1]["train_loss"])))


def test_detect(tmp_path):
    data = DetectionData(list(SHAPE_CLASSES), {"train": scenes_as_items(16, 64, 1), "val": scenes_as_items(4, 64, 2)})
    rows = torchrun("detect", 29518, tmp_path, data=write_yolo(data, tmp_path / "yolo"), model="yolo_n", imgsz=64,
                    batch=4, epochs=1, workers=0)
    assert len(rows) == 1 and 0 < float(rows[0]["train_loss"]) < 100 and "map" in rows[0]
    assert steps_done(tmp_path, "detect") == 16 // (2 * 4)


def test_segment(tmp_path):
    for split, count in (("train", 16), ("val", 4)):
        write_mask_set(tmp_path / split, count, seed=len(split))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    data = f"masks:{tmp_path}/train/images,{tmp_path}/train/masks;{tmp_path}/val/images,{tmp_path}/val/masks"
    rows = torchrun("segment", 29519, tmp_path, data=data, classes=tmp_path / "classes.txt", model="unet", width=8,
                    depth=2, imgsz=32, batch=4, epochs=1, workers=0)
    assert len(rows) == 1 and 0 < float(rows[0]["train_loss"]) < 100 and "miou" in rows[0]
    assert steps_done(tmp_path, "segment") == 16 // (2 * 4)
