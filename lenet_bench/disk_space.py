"""A full disk, found before work starts and named when it strikes: which folder, how much is free there
(a leaf, importing nothing of lenet_bench).

Creating an empty file succeeds on a full disk (it takes an inode, no block), so the check before
training writes real bytes. A write that fails later is recognised by its errno where it has one, by
the text SQLite and MLflow wrap it in where it has not, and, for writers that say only "write failed"
(PyTorch's), by the folder having less than a run's records left.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

# What the check before training writes (and removes): more than one run's records take (a LeNet-5
# checkpoint with Adam's state is under 1 MiB; its MLflow artifacts, model included, about 1 MiB).
RESERVE_BYTES = 4 * 1024 * 1024
_FULL_ERRNOS = {errno.ENOSPC, errno.EDQUOT}
_FULL_TEXTS = ("No space left on device", "Disk quota exceeded", "database or disk is full")


class OutOfSpace(Exception):
    """A folder whose disk is full; the message names it and the space left there."""

    def __init__(self, folder: Path | str, hint: str = "; free some space there and run the same command again"):
        self.folder = Path(folder)
        super().__init__(f"no space left on device in {self.folder} ({free_text(self.folder)} free){hint}")


def is_out_of_space(err: BaseException | None) -> bool:
    """Whether `err`, or an error it was raised from, says that a disk or a quota is full."""
    seen: set[int] = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        if isinstance(err, OutOfSpace):
            return True
        if isinstance(err, OSError) and err.errno in _FULL_ERRNOS:
            return True
        if any(text in str(err) for text in _FULL_TEXTS):
            return True
        err = err.__cause__ or err.__context__
    return False


def free_bytes(path: Path | str) -> int | None:
    """Bytes free to this user on the disk of `path` (or of its nearest existing parent); None if unknown."""
    try:
        return shutil.disk_usage(_existing(path)).free
    except OSError:
        return None


def _existing(path: Path | str) -> Path:
    folder = Path(path).absolute()
    while not folder.is_dir() and folder != folder.parent:
        folder = folder.parent
    return folder


def free_text(path: Path | str) -> str:
    free = free_bytes(path)
    if free is None:
        return "unknown space"
    size = float(free)
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def short_of_space(path: Path | str) -> bool:
    """Less than a run's records left on the disk of `path`: a failed write there was a full disk."""
    free = free_bytes(path)
    return free is not None and free < RESERVE_BYTES


def check_room(folder: Path, hint: str | None = None, reserve: int = RESERVE_BYTES) -> None:
    """Write `reserve` bytes into `folder` (or its nearest existing parent) and remove them: OutOfSpace now if
    the disk cannot take them."""
    folder = _existing(folder)
    fd, name = tempfile.mkstemp(dir=folder, prefix=".space-check-")
    try:
        with os.fdopen(fd, "wb") as file:
            chunk = b"\0" * (1024 * 1024)
            for start in range(0, reserve, len(chunk)):
                file.write(chunk[:reserve - start])
            file.flush()
            os.fsync(file.fileno())  # a filesystem that allocates at write-back refuses here
    except OSError as err:
        if is_out_of_space(err):
            raise (OutOfSpace(folder) if hint is None else OutOfSpace(folder, hint)) from None
        raise
    finally:
        Path(name).unlink(missing_ok=True)


def out_of_space_message(err: BaseException, folders: Iterable[Path]) -> str:
    """What to tell the user about an out-of-space `err` that struck while writing into `folders`: the
    folder the error names, else those of `folders` short of space (else all), each with its free space."""
    while err is not None and not isinstance(err, OutOfSpace):
        if isinstance(err, OSError) and err.filename:
            return str(OutOfSpace(Path(str(err.filename)).parent))
        err = err.__cause__ or err.__context__  # type: ignore[assignment]
    if isinstance(err, OutOfSpace):
        return str(err)
    folders = list(dict.fromkeys(Path(f) for f in folders))
    full = [f for f in folders if short_of_space(f)] or folders
    return "no space left on device: " + "; ".join(f"{f} ({free_text(f)} free)" for f in full)
