"""Run folders: runs/<task>/<name>, with exp, exp2, exp3, ... when no name is given."""

from pathlib import Path

from ..errors import FovealError


def new_run_dir(project: str, task: str, name: str = "", exist_ok: bool = False, stem: str = "exp") -> Path:
    """Create and return a fresh run folder (or reuse `name` when exist_ok)."""
    parent = Path(project) / task
    if name:
        path = parent / name
        if path.exists() and not exist_ok and any(path.iterdir()):
            raise FovealError(f"name: run folder {path} exists already; choose another name or pass exist_ok=true")
    else:
        path, n = parent / stem, 2
        while path.exists():
            path, n = parent / f"{stem}{n}", n + 1
    path.mkdir(parents=True, exist_ok=True)
    return path
