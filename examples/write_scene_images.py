"""Write N synthetic test scenes as PNG files and as a short video (what `make demo` predicts on).

They come from the `test` seed of foveal's shapes scenes, which training never sees.
"""

import sys
from pathlib import Path

import cv2

from foveal.data.detect_dataset import shapes_detection_data


def main(folder: str, count: int):
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    scenes = shapes_detection_data(n_train=0, n_val=count).splits["test"]
    video = cv2.VideoWriter(str(out / "scenes.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (320, 320))
    for i, scene in enumerate(scenes):
        bgr = cv2.cvtColor(scene.pixels, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / f"scene{i:02d}.png"), bgr)
        video.write(bgr)
    video.release()
    print(f"wrote {count} scenes to {out}/scene*.png and {out}/scenes.mp4")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
