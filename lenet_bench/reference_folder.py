"""What marks the project's reference results: a REFERENCE file in their folder. A leaf: the results
folder (which refuses to be written there) and checkpoints (which are never kept there) both ask it."""

from __future__ import annotations

from pathlib import Path

REFERENCE_MARKER = "REFERENCE"  # a file in the project's committed reference results
REFERENCE_RESULTS = Path("results/reference")  # where they are, from the repository's root


def inside_reference(path: Path) -> bool:
    """`path` is the project's reference results (a folder with a REFERENCE file) or inside them."""
    path = Path(path).resolve()
    return any((folder / REFERENCE_MARKER).is_file() for folder in (path, *path.parents))
