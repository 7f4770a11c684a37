"""Atomic file writing: every file foveal writes (run folders, reports, converted data) goes through here.

A file is written under a unique temporary name in its own folder, flushed to disk, then renamed over
the target, so a kill at any moment leaves either the old file or the new one, never half of one.
"""

import json
import os
import uuid
from pathlib import Path
from typing import Callable


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path), fsync it and rename it over `path`; the temporary file goes on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")  # unique: two writers never share one
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # some writers (savers given a path) close without fsync
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path, value, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")
