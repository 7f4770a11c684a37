"""`foveal TASK MODE key=value ...`: parse the words, call the Python API, turn user errors into one line."""

import sys
import warnings

from . import __version__
from .api import MODES, TASKS, run, task_class
from .config import describe
from .errors import FovealError
from .registry import list_models

USAGE = f"""usage: foveal TASK MODE [key=value ...]     tasks: {', '.join(TASKS)}; modes: {', '.join(MODES)}
       foveal TASK help                         the keys of TASK, with types, defaults and meanings
       foveal models [TASK]                     the available architectures

examples:
  foveal classify train data=digits model=simple_cnn epochs=5
  foveal classify train resume=runs/classify/exp
  foveal classify val weights=runs/classify/exp/best.safetensors
  foveal classify predict weights=runs/classify/exp/best.safetensors source=images/ topk=3
  foveal classify info model=resnet18 imgsz=224"""


def parse_pairs(words: list[str]) -> dict[str, str]:
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise FovealError(f"expected key=value, got '{word}' (`foveal TASK help` lists the keys)")
        pairs[key.strip().lstrip("-").replace("-", "_")] = value
    return pairs


def one_line_warnings(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = one_line_warnings
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version"):
        print(f"foveal {__version__}")
        return 0
    try:
        if argv[0] == "models":
            print("\n".join(list_models(argv[1] if len(argv) > 1 else None)))
            return 0
        if len(argv) > 1 and argv[1] in ("help", "-h", "--help"):
            print(f"foveal {argv[0]} keys:\n{describe(task_class(argv[0]).Config)}")
            return 0
        if len(argv) < 2:
            raise FovealError(f"expected a mode after '{argv[0]}': {', '.join(MODES)}")
        run(argv[0], argv[1], **parse_pairs(argv[2:]))
        return 0
    except FovealError as e:
        print(f"foveal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foveal: interrupted; the last finished epoch is kept (resume=RUN_FOLDER continues)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
