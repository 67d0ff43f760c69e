"""Datasets (MNIST, Fashion-MNIST, CIFAR-10): finding, downloading, verifying, and the one place for preprocessing.

registry.py: one entry per dataset (shape, classes, counts, checksums, mirrors, file layout); layouts.py: how
each layout is found on disk; formats.py: reading and checking the files; sources.py: where to look
(`load_dataset`, `cache_dir`); download.py: fetching into the cache; preparation.py: `prepare`; cache.py:
one data cache per process.

The public API below is imported on first use, so that `lenet_bench.data.registry` stays light for the spec
schema (no numpy, no readers).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lenet_bench.data.errors import DataError
    from lenet_bench.data.preparation import NORMALIZATIONS, PreparedData, preparation_key, prepare, preprocess_images
    from lenet_bench.data.sources import CACHE_DIR_ENV, DATA_DIR_ENV, DatasetLoader, RawDataset, cache_dir, load_dataset

_EXPORTS = {
    "DataError": "errors",
    "RawDataset": "sources", "DatasetLoader": "sources", "load_dataset": "sources", "cache_dir": "sources",
    "DATA_DIR_ENV": "sources", "CACHE_DIR_ENV": "sources",
    "PreparedData": "preparation", "prepare": "preparation", "preparation_key": "preparation",
    "preprocess_images": "preparation", "NORMALIZATIONS": "preparation",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> object:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
