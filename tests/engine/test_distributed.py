"""`torchrun --nproc_per_node=2` for every task, as 2 CPU processes (gloo).

The engine checks after every epoch that the processes' weights are identical to the bit (they drift
apart at once when gradients are not averaged: tests/engine/test_engine.py shows the check failing then), so a
run that finishes here also proves that the gradients were synchronised.
"""

import csv
import os
import socket
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from foveal.data.detection import DetectionData
from foveal.data.formats.yolo import write_yolo
from foveal.data.synthetic import SHAPE_CLASSES
from foveal.engine.checkpoint import load_train_state

from tests.conftest import QUICK
from tests.tasks.detect.test_detect import scenes_as_items
from tests.tasks.segment.test_segment import CLASSES, write_mask_set


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


# threads=1: one node of two processes and two nodes of one would otherwise take different thread counts
CLASSIFY = {**QUICK, "epochs": 2, "verbose": True, "threads": 1}


@pytest.fixture(scope="module")
def one_node(tmp_path_factory):
    """(run folder's parent, metrics rows) of classify trained by one node of two processes."""
    root = tmp_path_factory.mktemp("one_node")
    return root, torchrun("classify", 29517, root, **CLASSIFY)


def test_classify(one_node):
    tmp_path, rows = one_node
    assert len(rows) == 2 and float(rows[-1]["top1"]) > 0.5
    # each process saw half of each epoch: 1437 images / (2 x 64) = 11 steps per epoch
    assert steps_done(tmp_path, "classify") == 2 * (1437 // 2 // 64)
    assert torch.isfinite(torch.tensor(float(rows[-1]["train_loss"])))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def without_seconds(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]


# static: rank = node rank (node 0 holds rank 0, the run folder); c10d: the rendezvous numbers the nodes itself
@pytest.mark.parametrize("backend", ["static", "c10d"])
def test_two_nodes_train_as_one_node_of_two_processes(backend, one_node, tmp_path):
    port = free_port()
    if backend == "static":
        rendezvous = ["--master-addr=127.0.0.1", f"--master-port={port}"]
    else:
        rendezvous = ["--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=foveal-test"]
    words = [f"{k}={v}" for k, v in {"amp": "off", **CLASSIFY, "project": tmp_path, "name": "ddp"}.items()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}",
                               "--nproc-per-node=1", *rendezvous, "-m", "foveal", "classify", "train", *words],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for rank in (0, 1)]
    outputs = [node.communicate(timeout=600) for node in nodes]
    for node, (_, stderr) in zip(nodes, outputs):
        assert node.returncode == 0, stderr[-3000:]
    # one process logs and writes (global rank 0, whichever node it is on): one run folder, one epoch table
    logging = ["x2 processes" in stdout for stdout, _ in outputs]
    assert sum(logging) == 1 and all(not stdout for (stdout, _), logs in zip(outputs, logging) if not logs)
    if backend == "static":
        assert logging == [True, False]  # node 1's process is rank 1: it neither logs nor writes
    assert sorted(p.name for p in (tmp_path / "classify").iterdir()) == ["ddp"]

    one_root, one_rows = one_node
    with open(tmp_path / "classify" / "ddp" / "metrics.csv") as f:
        assert without_seconds(list(csv.DictReader(f))) == without_seconds(one_rows)
    assert steps_done(tmp_path, "classify") == steps_done(one_root, "classify")
    two, one = (load_file(root / "classify" / "ddp" / "best.safetensors") for root in (tmp_path, one_root))
    assert two.keys() == one.keys() and all(torch.equal(two[k], one[k]) for k in one)


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
