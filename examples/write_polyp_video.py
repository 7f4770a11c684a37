"""Write a short synthetic endoscopy video, a few of its frames as PNG files, and its polyp boxes.

    python examples/write_polyp_video.py FOLDER [FRAMES]

FOLDER/polyps.mp4 (320x256, 12 fps): a scope slowly panning and zooming over mucosa with polyps, made
the same way every time by foveal's `polyps` generator; FOLDER/frame*.png every 12th frame (lossless,
not decoded from the mp4), and FOLDER/boxes.json the exact polyp boxes [x1, y1, x2, y2] of every frame.
"""

import json
import sys
from pathlib import Path

import cv2

from foveal.data.polyps import polyp_video_frames, write_polyp_video


def main(folder: str, frames: int):
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    boxes = write_polyp_video(out / "polyps.mp4", frames=frames)
    (out / "boxes.json").write_text(json.dumps([frame_boxes.tolist() for frame_boxes in boxes]) + "\n")
    for index, (frame, *_) in enumerate(polyp_video_frames(frames)):  # the same frames again: rendering is cheap
        if index % 12 == 0:
            cv2.imwrite(str(out / f"frame{index:02d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    print(f"wrote {out}/polyps.mp4, {out}/frame*.png and {out}/boxes.json ({frames} frames)")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 48)
