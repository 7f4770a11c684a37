"""Super-resolution frame rate: an untrained model (the cost does not depend on the weights) enlarging a
640x360 colour frame `--scale` times (x3: 1920x1080), in PyTorch eager and as its ONNX export run by
onnxruntime, `--threads` threads; frames per second over `--runs` calls after two untimed ones.

    python benchmarks/restore_frame_rate.py --model espcn --scale 3 --threads 2
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch

from foveal.engine.onnx_export import export_onnx
from foveal.engine.onnx_runtime import session_runner
from foveal.registry import create_model


def frames_per_second(run, frame: torch.Tensor, runs: int) -> float:
    with torch.inference_mode():
        for _ in range(2):
            run(frame)
        started = time.perf_counter()
        for _ in range(runs):
            run(frame)
    return runs / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="espcn")
    parser.add_argument("--scale", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = create_model(args.model, "restore", channels=3, scale=args.scale).eval()
    frame = torch.rand(1, 3, 360, 640)
    meta = {"model": args.model, "task": "restore", "model_kwargs": {"channels": 3, "scale": args.scale}}
    with tempfile.TemporaryDirectory() as folder:
        path = export_onnx(model, meta, Path(folder) / "model.onnx", 256, dynamic=True)
        onnx = frames_per_second(session_runner(path, torch.device("cpu")), frame, args.runs)
    eager = frames_per_second(model, frame, args.runs)
    print(f"{args.model} x{args.scale}, 640x360 -> {640 * args.scale}x{360 * args.scale}, {args.threads} threads: "
          f"PyTorch {eager:.2f} frames/s, onnxruntime {onnx:.2f} frames/s")


if __name__ == "__main__":
    main()
