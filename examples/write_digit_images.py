"""Write N digits of the validation split of scikit-learn's set as PNG files (what `make demo` predicts on)."""

import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

from foveal.data.classify import split_indices


def main(folder: str, count: int):
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    digits = load_digits()
    _, val = split_indices(digits.target, 0.2)  # the images foveal's digits training never sees
    for i in val[:count]:
        pixels = (digits.images[i] * 255 / 16).astype(np.uint8)
        Image.fromarray(pixels).resize((32, 32), Image.BILINEAR).save(out / f"digit{i}_true{digits.target[i]}.png")
    print(f"wrote {count} images to {out}")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 8)
