"""Where datasets come from, and loading one verified.

Where `load_dataset` looks, in order:
  1. the `data_dir` argument, else $LENET_BENCH_DATA_DIR (once given, the data must be there: no fall-through);
  2. the cache, `cache_dir() / name`;
  3. system-wide copies (the registry's `system_dirs`, e.g. Fashion-MNIST from Debian's `dataset-fashion-mnist`);
  4. the registry's mirrors, downloaded into the cache.
Everything read is verified (layout, sizes, labels and, for MNIST and Fashion-MNIST, sha256 of the content)
before use, so a result can never come from silently corrupt data.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from lenet_bench.data import registry
from lenet_bench.data.errors import DataError, unreadable
from lenet_bench.data.registry import DatasetInfo

DATA_DIR_ENV = "LENET_BENCH_DATA_DIR"
CACHE_DIR_ENV = "LENET_BENCH_CACHE_DIR"


@dataclass(frozen=True)
class RawDataset:
    """A verified dataset as stored: uint8 images (N,28,28) or (N,32,32,3), int64 labels. Arrays are read-only."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # the file or folder it was read from
    digest: str  # 16 hex digits identifying the exact content, whatever the file format


def cache_dir() -> Path:
    """Root of lenet_bench's cache: $LENET_BENCH_CACHE_DIR, else $XDG_CACHE_HOME/lenet_bench (~/.cache/lenet_bench)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lenet_bench"


def load_dataset(name: str, data_dir: str | os.PathLike[str] | None = None, *, download: bool = True) -> RawDataset:
    """Find, verify and load dataset `name` (see the module docstring for where it looks)."""
    if name not in registry.dataset_names():
        raise ValueError(f"unknown dataset {name!r}; expected one of {registry.dataset_names()}")
    dataset = registry.info(name)
    given, origin = (data_dir, "data_dir") if data_dir is not None else (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)
    if given:
        root = Path(given).expanduser()
        found = _find(dataset, root / name) or _find(dataset, root)
        if found is None:
            raise DataError(f"{origin}={root}: no {name} data there or in {root / name}; "
                            f"expected {dataset.layout.expected(name)}")
        return _load(dataset, found)

    cached = cache_dir() / name
    for root in (cached, *dataset.system_dirs):
        found = _find(dataset, root)
        if found is not None:
            return _load(dataset, found)
    if not download:
        searched = ", ".join(str(p) for p in (cached, *dataset.system_dirs))
        raise DataError(f"{name} not found in {searched} and download=False; expected "
                        f"{dataset.layout.expected(name)}. Pass --data-dir DIR or set {DATA_DIR_ENV}=DIR to use "
                        "a local copy.")
    try:
        dataset.layout.download(dataset, cached)
    except OSError as exc:  # the download names what it writes; this is the net for looking at the cache
        raise unreadable(exc.filename or cached, exc) from exc
    found = _find(dataset, cached)
    if found is None:
        raise DataError(f"{cached}: {name} was downloaded there but cannot be found")
    return _load(dataset, found)


class DatasetLoader:
    """`load_dataset` for one data_dir, remembering failures too, so that a missing dataset
    (a failed download takes up to a minute per mirror) is tried once per invocation, not once per run."""

    def __init__(self, data_dir: str | os.PathLike[str] | None = None):
        self.data_dir = data_dir
        self._found: dict[str, RawDataset | DataError] = {}

    def load(self, name: str) -> RawDataset:
        if name not in self._found:
            try:
                self._found[name] = load_dataset(name, self.data_dir)
            except DataError as err:
                self._found[name] = err
        found = self._found[name]
        if isinstance(found, DataError):
            raise found
        return found


def _find(dataset: DatasetInfo, root: Path) -> Path | None:
    """The dataset inside `root` (see its layout); None if it is not there."""
    try:
        return dataset.layout.find(dataset.name, root)
    except OSError as exc:  # e.g. a folder the user may not read: pathlib only hides "does not exist"
        raise unreadable(exc.filename or root, exc) from exc


def _load(dataset: DatasetInfo, source: Path) -> RawDataset:
    try:
        source = source.resolve()
        return _load_verified(dataset, source, _fingerprint(source))
    except OSError as exc:  # the readers name the files they fail on; this is the net for anything else
        raise unreadable(exc.filename or source, exc) from exc


def _fingerprint(source: Path) -> tuple[tuple[str, int, int], ...]:
    """Sizes and mtimes of the files at `source`: cheap, and changes whenever a file is rewritten."""
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


# Parsing and hashing 60k images takes about a second; a process (e.g. a sweep) loads the same data many times.
# The fingerprint and the registry entry are part of the key, so changed files or expectations are read afresh.
@lru_cache(maxsize=4)
def _load_verified(dataset: DatasetInfo, source: Path, fingerprint: tuple[tuple[str, int, int], ...]) -> RawDataset:
    arrays, payload_sha256 = dataset.layout.read(dataset, source)
    frozen = {}
    for key, array in arrays.items():
        array = np.ascontiguousarray(array, dtype=np.int64 if key.startswith("y") else np.uint8)
        array.flags.writeable = False  # shared through the cache above: nobody may alter it in place
        frozen[key] = array
    digest = hashlib.sha256("".join(payload_sha256).encode()).hexdigest()[:16]
    return RawDataset(name=dataset.name, source=str(source), digest=digest, **frozen)
