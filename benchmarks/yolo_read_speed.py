"""YOLO read speed: read_yolo with and without the caches it keeps beside data.yaml.

On a YOLO data set of `--images` synthetic scenes (foveal's shapes, `--imgsz` px PNGs, written by
write_yolo into a temporary folder), the median seconds of read_yolo over `--repeats` reads:

  cold         no cache files: every image header opened, every label file parsed, every image decoded
  check only   the decode check cached (.foveal-image-check.json), the label cache removed: a second read
               as it was before the label cache
  warm         both caches present (.foveal-label-cache.json too): a second read now

The files themselves stay in the OS page cache throughout, so this measures the work the caches save
(header parsing, label parsing, decoding), not disk reads; on a network or cold disk the gap is wider.
Run by hand, never in CI:

    .venv/bin/python benchmarks/yolo_read_speed.py
    .venv/bin/python benchmarks/yolo_read_speed.py --images 10000 --imgsz 128
"""

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from foveal.data.detection import DetectionData, ImageAnnotations
from foveal.data.formats.yolo import LABEL_CACHE, read_yolo, write_yolo
from foveal.data.images import CHECK_CACHE
from foveal.data.synthetic import SHAPE_CLASSES, make_scene_set


def write_scenes(folder: Path, count: int, imgsz: int) -> Path:
    items = [ImageAnnotations("", imgsz, imgsz, s.boxes, s.labels, np.zeros(len(s.labels), bool), s.image)
             for s in make_scene_set(count, imgsz, seed=0)]
    return write_yolo(DetectionData(list(SHAPE_CLASSES), {"train": items}), folder)


def median_read_seconds(yaml_path: Path, repeats: int, remove: tuple[str, ...]) -> float:
    """Median seconds of read_yolo, the cache files named in `remove` deleted before each read."""
    times = []
    for _ in range(repeats):
        for name in remove:
            (yaml_path.parent / name).unlink(missing_ok=True)
        started = time.perf_counter()
        read_yolo(yaml_path)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--imgsz", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        yaml_path = write_scenes(Path(folder) / "data", args.images, args.imgsz)
        print(f"{args.images} images of {args.imgsz}x{args.imgsz} px, {platform.processor() or platform.machine()}, "
              f"median of {args.repeats} reads")
        cold = median_read_seconds(yaml_path, args.repeats, (CHECK_CACHE, LABEL_CACHE))
        check_only = median_read_seconds(yaml_path, args.repeats, (LABEL_CACHE,))
        read_yolo(yaml_path)  # leaves both caches in place
        warm = median_read_seconds(yaml_path, args.repeats, ())
    print(f"{'read':<12} {'seconds':>8} {'cold / this':>12}")
    for name, seconds in [("cold", cold), ("check only", check_only), ("warm", warm)]:
        print(f"{name:<12} {seconds:>8.3f} {cold / seconds:>12.1f}")


if __name__ == "__main__":
    main()
