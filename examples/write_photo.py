"""Write one of the photographs that ship inside scikit-image's wheel (nothing downloaded) as a PNG:
what `make demo-inspect` filters, pools and looks at with an untrained ResNet."""

import sys
from pathlib import Path

from PIL import Image
from skimage import data


def main(path: str, name: str = "chelsea"):
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(getattr(data, name)()).save(out)
    print(f"wrote scikit-image's {name} to {out}")


if __name__ == "__main__":
    main(*sys.argv[1:])
