"""`foveal TASK MODE key=value ...`: parse the words, call the Python API, and end every failure in one line:

a user mistake (FovealError) exits 2 with `foveal: error: ...`; a bug exits 1 naming the exception and
the error.log that holds its traceback (or, with debug=true, printing the traceback itself).
"""

import os
import sys
import tempfile
import textwrap
import time
import traceback
import warnings
from pathlib import Path

from . import __version__
from .api import MODES, OTHER_MODES, TASKS, run, task_class
from .config import describe
from .engine import runs
from .errors import FovealError, did_you_mean
from .files import write_text
from .registry import get_model_entry, list_models

USAGE = f"""usage: foveal TASK MODE [key=value ...]     tasks: {', '.join(TASKS)}; modes: {', '.join(MODES)}
       foveal MODE weights=W [key=value ...]    the same, the task read from the weights (all but train)
       foveal TASK help                         the keys of TASK, with types, defaults and meanings
       foveal models [TASK]                     the available architectures
       foveal serve weights=W [port=8000]       trained weights behind an HTTP API and a web page
       foveal basics OP [key=value ...]         worked examples: convolution, backprop, IoU, NMS, AP... (basics help)
       foveal version                           the version

examples:
  foveal classify train data=digits model=simple_cnn epochs=5
  foveal classify train resume=runs/classify/exp
  foveal classify val weights=runs/classify/exp/best.safetensors
  foveal classify predict weights=runs/classify/exp/best.safetensors source=images/ topk=3
  foveal predict weights=runs/detect/exp/best.safetensors source=video.mp4
  foveal detect track weights=runs/detect/exp/best.safetensors source=video.mp4 tracker=botsort show_trails=true
  foveal classify info model=resnet18 imgsz=224 rf=true memory=true
  foveal classify explain weights=runs/classify/exp/best.safetensors source=img.png method=gradcam
  (track: detect and segment's instance models; features and explain: classify, detect and segment;
   convert: detect)"""


def key_of(word: str) -> str:
    """The config key a `key=value` word names: `--batch-size=8` -> batch_size."""
    return word.partition("=")[0].strip().lstrip("-").replace("-", "_")


def parse_pairs(words: list[str]) -> dict[str, str]:
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise FovealError(f"expected key=value, got '{word}' (`foveal TASK help` lists the keys)")
        pairs[key_of(word)] = value
    return pairs


def model_list(task: str | None) -> str:
    """`foveal models [TASK]`: the registered names under one heading per task, and per kind where the
    registry knows one (segment's semantic and instance models, detect's fixed-size ones), then the training
    defaults some models bring (ModelEntry.defaults)."""
    if task is not None and task not in TASKS:  # an error, not an empty list
        raise FovealError(f"unknown task '{task}'{did_you_mean(task, TASKS)}; tasks: {', '.join(TASKS)}")
    lines = []
    for each in [task] if task else TASKS:
        groups, defaults = {}, {}
        for name in list_models(each):
            entry = get_model_entry(name, each)
            groups.setdefault(entry.kind, []).append(name)
            if entry.defaults:
                keys = " ".join(f"{k}={v:g}" for k, v in entry.defaults.items())
                defaults.setdefault(keys, []).append(name)
        for kind, names in sorted(groups.items()):
            lines.append(f"{each}{f' ({kind})' if kind else ''}: {len(names)}")
            lines.append(textwrap.fill(" ".join(names), 100, initial_indent="  ", subsequent_indent="  ",
                                       break_on_hyphens=False))
        for keys, names in defaults.items():
            lines.append(textwrap.fill(f"trains with {keys} unless told otherwise: {' '.join(names)}", 100,
                                       initial_indent="  ", subsequent_indent="    ", break_on_hyphens=False))
    return "\n".join(lines)


def one_line_warnings(message, category, filename, lineno, line=None):
    return f"warning: {message}\n"


def user_message(error: FovealError) -> str:
    """The error's one line. Raised in a DataLoader worker process, it arrives wrapped by torch in the
    worker's traceback ("Caught FovealError in DataLoader worker process 0. Original Traceback ...")."""
    text = str(error)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].removeprefix(f"{FovealError.__module__}.FovealError: ")
    return text


def wants_debug(argv: list[str]) -> bool:
    """Whether `debug=true` is among the words: read directly, so it holds even when the config cannot be built."""
    return any(key_of(word) == "debug" and word.partition("=")[2].strip().lower() in ("1", "true", "yes", "on")
               for word in argv)


def write_error_log(error_text: str) -> Path:
    """The full traceback of a bug, in the run folder this process made, else in the temporary folder."""
    if runs.last_run_dir is not None and runs.last_run_dir.is_dir():
        path = runs.last_run_dir / "error.log"
    else:
        path = Path(tempfile.gettempdir()) / f"foveal-error-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    return write_text(path, error_text)


def report_bug(error: Exception, argv: list[str]) -> int:
    """One line naming what failed and where the traceback is (or, with debug=true, the traceback); exit 1."""
    if wants_debug(argv):
        traceback.print_exc()
        return 1
    text = f"foveal {__version__}: foveal {' '.join(argv)}\n\n{traceback.format_exc()}"
    what = ": ".join([type(error).__name__, *str(error).strip().splitlines()[:1]])
    try:
        where = f"the traceback is in {write_error_log(text)}"
    except OSError:  # the log itself cannot be written: show the traceback here rather than lose it
        traceback.print_exc()
        where = "the traceback is above"
    print(f"foveal: internal error: {what} ({where}; debug=true prints it here)", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = one_line_warnings
    runs.last_run_dir = None  # only a folder made by this call may receive its error.log
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0
    if argv[0] in ("-V", "--version", "version"):
        print(f"foveal {__version__}")
        return 0
    try:
        if argv[0] == "serve":
            from .serve import serve

            serve(parse_pairs(argv[1:]))
            return 0
        if argv[0] == "basics":
            from .inspect.basics import basics

            basics(argv[1] if len(argv) > 1 else "", parse_pairs(argv[2:]))
            return 0
        if argv[0] == "models":
            print(model_list(argv[1] if len(argv) > 1 else None))
            return 0
        if argv[0] in (*MODES, *OTHER_MODES):  # `foveal MODE key=value ...`: the task from the weights
            run(None, argv[0], **parse_pairs(argv[1:]))
            return 0
        if len(argv) > 1 and argv[1] in ("help", "-h", "--help"):
            print(f"foveal {argv[0]} keys:\n{describe(task_class(argv[0]).Config)}")
            return 0
        if len(argv) < 2:
            raise FovealError(f"expected a mode after '{argv[0]}': {', '.join(MODES)}")
        run(argv[0], argv[1], **parse_pairs(argv[2:]))
        return 0
    except FovealError as e:
        print(f"foveal: error: {user_message(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("foveal: interrupted; the last finished epoch is kept (resume=RUN_FOLDER continues)", file=sys.stderr)
        return 130
    except Exception as e:  # a bug in foveal (or a library), not a mistake of the user's
        return report_bug(e, argv)


if __name__ == "__main__":
    sys.exit(main())
