"""Run folders: runs/<task>/<name>, with exp, exp2, exp3, ... when no name is given."""

from pathlib import Path

from ..errors import FovealError

# The run folder this process made last: where the CLI writes error.log when something breaks.
last_run_dir: Path | None = None


def new_run_dir(project: str, task: str, name: str = "", exist_ok: bool = False, stem: str = "exp") -> Path:
    """Create and return a fresh run folder (or reuse `name` when exist_ok)."""
    global last_run_dir
    parent = Path(project) / task
    if name:
        path = parent / name
        if path.exists() and not exist_ok and (not path.is_dir() or any(path.iterdir())):
            raise FovealError(f"name: run folder {path} exists already; choose another name or pass exist_ok=true")
    else:
        path, n = parent / stem, 2
        while path.exists():
            path, n = parent / f"{stem}{n}", n + 1
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # a file where a folder should be, no permission, a read-only disk...
        raise FovealError(f"project: cannot create the run folder {path}: {e.strerror or e}") from None
    last_run_dir = path
    return path
