"""Reading and writing files. Every file foveal writes (run folders, reports, converted data) is written
atomically here; text files are read here too, whether a Windows tool or another wrote them.

A file is written under a unique temporary name in its own folder, flushed to disk, then renamed over
the target, so a kill at any moment leaves either the old file or the new one, never half of one.
"""

import json
import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

from .errors import FovealError


def current_umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting one: restored at once
    os.umask(mask)
    return mask


UMASK = current_umask()  # read once, at import: umask() is process-wide, not thread-safe


def plain_file_mode(path: Path) -> int:
    """The permissions a plain open(path, "w") would leave: an existing file's own, else 0666 less the umask."""
    try:
        return path.stat().st_mode & 0o7777
    except OSError:
        return 0o666 & ~UMASK


@contextmanager
def atomic_path(path):
    """`with atomic_path(path) as tmp:` write tmp over the block (for writers that fill a file over time, as
    cv2.VideoWriter does); when the block ends it is fsynced, given the permissions open() would give it (some
    savers, safetensors among them, create theirs 0600) and renamed over `path`; when the block raises it is
    removed. tmp is unique (two writers never share one) and keeps path's extension (writers pick the format
    by it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex}.tmp{path.suffix}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # some writers (savers given a path) close without fsync
            os.fsync(f.fileno())
        os.chmod(tmp, plain_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp_path) and put the file in place as atomic_path does."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def write_bytes(path, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path, text: str) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path, value, indent: int | None = 2) -> Path:
    return write_text(path, json.dumps(value, indent=indent) + "\n")


def read_text(path: Path, error=FovealError) -> str:
    """A text file as UTF-8, without the byte-order mark Windows tools write; raises `error` naming the
    line and byte of the first that is not UTF-8. (Line ends: str.splitlines, csv, json and yaml take any.)"""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise error(f"{path}:{line}: not UTF-8 text (byte 0x{data[e.start]:02x} at byte offset {e.start}); "
                    f"save it as UTF-8") from None
