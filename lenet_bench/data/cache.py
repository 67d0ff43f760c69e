"""One data cache for `run` and `bench`: each dataset loaded once, each preparation made once, per process."""

from __future__ import annotations

import os
import time
from typing import Protocol

from lenet_bench.data.preparation import PreparedData, preparation_key, prepare
from lenet_bench.data.sources import DatasetLoader, RawDataset


class DataSection(Protocol):
    """What the cache reads of a spec's `data` section (spec.schema.DataSpec): the data package imports no spec."""

    @property
    def dataset(self) -> str: ...
    @property
    def input_size(self) -> int: ...
    @property
    def normalization(self) -> str: ...
    @property
    def validation_split(self) -> float: ...
    @property
    def subset(self) -> int | None: ...
    @property
    def test_subset(self) -> int | None: ...
    @property
    def resize(self) -> int | None: ...


class DataCache:
    def __init__(self, data_dir: str | os.PathLike | None = None):
        self._loader = DatasetLoader(data_dir)
        self._prepared: dict[str, tuple[PreparedData, float]] = {}

    def raw(self, dataset: str) -> RawDataset:
        return self._loader.load(dataset)

    def key(self, d: DataSection) -> str:
        """The key `prepared(d)` will have (loads the raw dataset, prepares nothing)."""
        return preparation_key(self.raw(d.dataset), input_size=d.input_size, normalization=d.normalization,
                               validation_split=d.validation_split, subset=d.subset, test_subset=d.test_subset,
                               resize=d.resize)

    def prepared(self, d: DataSection) -> tuple[PreparedData, float]:
        """The prepared splits, and the seconds loading and preparing took (0 once cached)."""
        start = time.perf_counter()
        key = self.key(d)
        if key not in self._prepared:
            prepared = prepare(self.raw(d.dataset), input_size=d.input_size, normalization=d.normalization,
                               validation_split=d.validation_split, subset=d.subset, test_subset=d.test_subset,
                               resize=d.resize)
            self._prepared[key] = (prepared, time.perf_counter() - start)
            return self._prepared[key]
        return self._prepared[key][0], 0.0
