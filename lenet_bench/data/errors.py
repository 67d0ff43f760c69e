"""The one exception a user's data can cause."""

from __future__ import annotations

import os


class DataError(Exception):
    """A dataset is missing, unreadable, or not what it should be; the message names the file or folder."""


def unreadable(path: str | os.PathLike[str], exc: OSError) -> DataError:
    """A DataError for an OSError met while looking at or reading `path` (permissions, a folder for a file...)."""
    return DataError(f"{path}: cannot read ({exc})")
