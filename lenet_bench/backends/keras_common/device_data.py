"""A Keras engine's copies of the prepared datasets, kept between the runs of one process.

Copying a prepared dataset into TensorFlow or JAX arrays took 0.4-0.8 s a run (a fresh 200 MB
allocation each time), although a worker trains run after run on the same few datasets. The copies
of the most recently used ones are kept, keyed by the data's key (its content and preparation) and
the device; the numpy originals stay in the worker's DataCache either way.

Not functools.lru_cache: the copy is made by a factory given with each call (the engine's own arrays), and the
release after a run walks and clears what is kept (`kept`, `clear`), which a decorated function does not expose.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

Arrays = TypeVar("Arrays")

KEPT_DATASETS = 2  # the default suite's two most used preparations of MNIST (32x32 padded, 28x28), ~250 MB each


class RecentDeviceData(Generic[Arrays]):
    """The device copies of the last `keep` datasets asked for, the least recently used dropped first."""

    def __init__(self, keep: int = KEPT_DATASETS):
        self.keep = keep
        self._kept: OrderedDict[Hashable, Arrays] = OrderedDict()

    def get(self, key: Hashable, copy_to_device: Callable[[], Arrays]) -> Arrays:
        if key in self._kept:
            self._kept.move_to_end(key)
            return self._kept[key]
        arrays = copy_to_device()
        self._kept[key] = arrays
        while len(self._kept) > self.keep:
            self._kept.popitem(last=False)
        return arrays

    def __len__(self) -> int:
        return len(self._kept)

    def kept(self) -> list[Arrays]:
        """The kept copies, the least recently used first."""
        return list(self._kept.values())

    def clear(self) -> None:
        self._kept.clear()
