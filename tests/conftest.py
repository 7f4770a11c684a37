"""Shared fixtures: tiny image folders made on the spot, and a quick training config."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_flush_denormal(True)  # as foveal does whenever it trains or evaluates

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def write_colour_images(folder: Path, count: int, size: int = 24, seed: int = 0, classes=COLOURS):
    """folder/<colour>/<i>.png: noisy images whose mean colour is the class (easy to learn)."""
    rng = np.random.default_rng(seed)
    for name, rgb in classes.items():
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            pixels = np.clip(np.array(rgb) + rng.normal(0, 40, (size, size, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{i}.png")


@pytest.fixture
def colour_folder(tmp_path) -> Path:
    """tmp/colours/{train,val}/{red,green,blue}/*.png"""
    root = tmp_path / "colours"
    write_colour_images(root / "train", 12, seed=0)
    write_colour_images(root / "val", 4, seed=1)
    return root


def run_cli(*args, cwd=None, timeout=600):
    """Run `python -m foveal ARGS` and return the CompletedProcess (text output). Training runs in full
    precision unless the test says amp=: the machine must not choose what a test checks."""
    args = [str(a) for a in args]
    if args[1:2] == ["train"] and not any(a.startswith("amp=") for a in args):
        args.append("amp=off")
    return subprocess.run([sys.executable, "-m", "foveal", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(autouse=True)
def cpu_without_bf16(monkeypatch):
    """amp=auto as on a CPU without native bf16, whatever this one has; tests that want bf16 say amp=bf16."""
    monkeypatch.setattr("foveal.engine.device.cpu_has_native_bf16", lambda: False)


QUICK = dict(data="digits", model="simple_cnn", imgsz=16, batch=64, verbose=False, workers=0)
