"""Write N synthetic test scenes as PNG files and as a short video (what `make demo` predicts on).

    python examples/write_scene_images.py FOLDER [N] [detect|segment]

They come from the `test` seed of foveal's shapes scenes for that task (320 px for detection,
128 px for segmentation), which training never sees.
"""

import sys
from pathlib import Path

import cv2


def test_scenes(task: str, count: int):
    """(H, W, 3) RGB arrays of the task's shapes test split."""
    if task == "segment":
        from foveal.data.segmentation import shapes_segmentation_data

        return [item.pixels for item in shapes_segmentation_data(n_train=0, n_val=count).splits["test"]]
    from foveal.data.detect_dataset import shapes_detection_data

    return [item.pixels for item in shapes_detection_data(n_train=0, n_val=count).splits["test"]]


def main(folder: str, count: int, task: str):
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    scenes = test_scenes(task, count)
    height, width = scenes[0].shape[:2]
    video = cv2.VideoWriter(str(out / "scenes.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (width, height))
    for i, pixels in enumerate(scenes):
        bgr = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
        cv2.imwrite(str(out / f"scene{i:02d}.png"), bgr)
        video.write(bgr)
    video.release()
    print(f"wrote {count} scenes to {out}/scene*.png and {out}/scenes.mp4")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8, sys.argv[3] if len(sys.argv) > 3 else "detect")
