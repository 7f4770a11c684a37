"""Two foveal processes on one machine: each one's time beside the other, against its time alone.

Three workloads, each a whole command as a user runs it (python start-up and torch import included):

  forward   a fused yolo_n in eval mode, batch 1 at 160 px, --forwards calls (foveal's default threads)
  train     `foveal detect train` of yolo_n, 128 px, 4 epochs of 96 synthetic scenes (COCO files)
  predict   `foveal detect predict` of its weights over the 96 scenes' folder

Each pair (train + predict, train + train, forward + forward) starts both processes at once; in
`train+predict@8` the second starts 8 seconds after the first (the run chose its threads on a quiet
machine: it must give cores back). The ratio is a process's seconds in the pair over its seconds alone
(medians of --repeats runs). Fair sharing of the cores makes it about 2 while both run. Three arms,
measured in the same run:

  before    every core as torch threads (what foveal did before), OpenMP's default wait policy (idle
            threads spin a while before they sleep)
  passive   every core, OMP_WAIT_POLICY=PASSIVE (idle threads sleep at once)
  foveal    foveal's thread choice: the cores left free since foveal was imported, and in train and predict every
            10 s after; OpenMP's default wait policy

Goal (issue 23): in the foveal arm each process of a pair at most 2.5x its time alone, and alone no
slower than `before`. Run by hand on an otherwise quiet machine, never in CI:

    .venv/bin/python benchmarks/busy_machine.py
    .venv/bin/python benchmarks/busy_machine.py --pairs train+predict@8 --repeats 3
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FORWARD = """
import time, torch, foveal
from foveal.engine.device import configure_cpu
configure_cpu(int({threads}), log=print)
model = foveal.create_model("yolo_n", "detect", num_classes=6).eval().fuse()
x = torch.rand(1, 3, 160, 160)
with torch.inference_mode():
    for _ in range(5):
        model(x)
    for _ in range({forwards}):
        model(x)
"""


def commands(workdir: Path, forwards: int) -> dict[str, list[str]]:
    python = [sys.executable, "-m", "foveal"]
    common = ["amp=off", "plots=false", "workers=0", f"project={workdir}", "exist_ok=true"]
    return {
        "forward": [sys.executable, "-c", FORWARD.replace("{forwards}", str(forwards))],
        "train": [*python, "detect", "train", data(workdir), "model=yolo_n", "imgsz=128", "epochs=4", "batch=16",
                  *common],
        "predict": [*python, "detect", "predict", f"weights={workdir}/detect/weights/best.safetensors",
                    f"source={workdir}/scenes/train", *common[3:]],
    }


def arm_setup(arm: str, command: list[str], cores: int, name: str) -> tuple[list[str], dict]:
    env = {**os.environ}
    env.pop("OMP_WAIT_POLICY", None)
    threads = 0 if arm == "foveal" else cores
    if arm == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    if command[1] == "-c":
        command = [command[0], "-c", command[2].replace("{threads}", str(threads))]
    else:
        command = [*command, f"threads={threads}", f"name={name}"]
    return command, env


def run_together(jobs: list[tuple[list[str], dict]], delay: float = 0.0) -> list[float]:
    """Start every job, `delay` seconds apart; each one's wall seconds."""
    started, processes = [], []
    for k, (command, env) in enumerate(jobs):
        if k:
            time.sleep(delay)
        started.append(time.perf_counter())
        processes.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    seconds = [0.0] * len(jobs)
    pending = set(range(len(jobs)))
    while pending:
        for k in list(pending):
            if processes[k].poll() is not None:
                seconds[k] = time.perf_counter() - started[k]
                pending.discard(k)
                output = processes[k].stdout.read()
                if processes[k].returncode:
                    sys.exit(f"failed: {' '.join(jobs[k][0][:6])} ...\n{output[-2000:]}")
                if "busy machine" in output:
                    print("   ", next(line for line in output.splitlines() if "busy machine" in line))
        time.sleep(0.02)
    return seconds


def data(workdir: Path) -> str:
    scenes = workdir / "scenes"
    return f"data=coco:{scenes}/train.json,{scenes}/train;{scenes}/val.json,{scenes}/val"


def prepare(workdir: Path):
    """96 training and 32 val scenes of 160 px as COCO files, and weights for predict (the train workload)."""
    import numpy as np

    from foveal.data.detection import DetectionData, ImageAnnotations
    from foveal.data.formats.coco import write_coco
    from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set

    def split(count, seed):
        return [ImageAnnotations("", 160, 160, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
                for s in make_scene_set(count, 160, seed)]

    write_coco(DetectionData(list(SHAPE_CLASSES), {"train": split(96, 1), "val": split(32, 2)}), workdir / "scenes")
    subprocess.run([*commands(workdir, 0)["train"], "verbose=false", "name=weights"], check=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", nargs="+", default=["forward+forward", "train+predict", "train+train",
                                                       "train+predict@8"])
    parser.add_argument("--arms", nargs="+", default=["before", "passive", "foveal"])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--forwards", type=int, default=300)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        prepare(workdir)
        work = commands(workdir, args.forwards)
        print(f"{cores} cores; seconds of each process alone and in a pair started at once (ratio: pair / alone)")
        print(f"{'arm':8} {'pair':16} {'process':8} {'alone s':>8} {'pair s':>8} {'ratio':>6}")
        for arm in args.arms:
            for pair in args.pairs:
                names, _, delay = pair.partition("@")
                names, delay = names.split("+"), float(delay or 0)
                alone = {name: statistics.median(run_together([arm_setup(arm, work[name], cores, f"{name}-a")])[0]
                                                 for _ in range(args.repeats)) for name in set(names)}
                together = [run_together([arm_setup(arm, work[name], cores, f"{name}-{k}")
                                          for k, name in enumerate(names)], delay) for _ in range(args.repeats)]
                for k, name in enumerate(names):
                    seconds = statistics.median(run[k] for run in together)
                    print(f"{arm:8} {pair:16} {name:8} {alone[name]:8.1f} {seconds:8.1f} {seconds / alone[name]:6.2f}",
                          flush=True)


if __name__ == "__main__":
    main()
