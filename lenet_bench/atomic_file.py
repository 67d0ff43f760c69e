"""Whole files or none: a temp file in the target's folder, renamed into place (a leaf, importing nothing
of lenet_bench). A reader never sees half a file, and a stop at any moment leaves the old file or the new."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_text_atomically(path: Path, text: str, mode: int | None = None) -> None:
    """`text` into `path`; `mode`: its permissions (mkstemp makes 0600), None to keep those."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as file:
            file.write(text)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
