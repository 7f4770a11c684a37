"""Write the embedded tracking videos to try `track` on, each with its ground truth.

    python examples/write_track_video.py FOLDER

FOLDER/shapes-01.mp4: the first `shapes_video` sequence (shapes crossing, hiding each other, entering and
leaving), and FOLDER/polyps-01.mp4: the first `polyps_video` sequence (the scope pans and zooms), both
320x256 at 12 fps and made the same way every time; beside each, NAME.txt holds its MOTChallenge ground
truth (frame,id,left,top,width,height,1,class,1, 1-based).
"""

import sys
from pathlib import Path

from foveal.data.videos import tracking_sequences, write_track_video


def main(folder: str):
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("shapes_video", "polyps_video"):
        sequence = tracking_sequences(name)[0]
        write_track_video(sequence, out / f"{sequence.name}.mp4")
        print(f"wrote {out}/{sequence.name}.mp4 and {sequence.name}.txt ({len(sequence.frames)} frames)")


if __name__ == "__main__":
    main(sys.argv[1])
