"""Honest clocks: warm-up apart, device synchronized before every reading.

Backends hand in a `sync` function (a no-op on CPU, `torch.cuda.synchronize` on a GPU);
every clock reading here happens after calling it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np


class Stopwatch:
    """Accumulates synchronized wall time; `sync` runs before each reading."""

    def __init__(self, sync: Callable[[], None]):
        self.sync = sync
        self._start: float | None = None

    def start(self) -> None:
        self.sync()
        self._start = time.perf_counter()

    def read(self) -> float:
        self.sync()
        assert self._start is not None, "Stopwatch.read() before start()"
        return time.perf_counter() - self._start


def time_calls(fn: Callable[[], object], sync: Callable[[], None], *, warmup: int, repeats: int) -> np.ndarray:
    """Seconds per call of `fn`, after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    sync()
    samples = np.empty(repeats)
    for i in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        samples[i] = time.perf_counter() - start
    return samples


def inference_timings(predict_batch: Callable[[Any], object], sync: Callable[[], None], x: Any,
                      *, batch: int = 1024, repeats: int = 5, latency_calls: int = 100) -> dict[str, float]:
    """Large-batch inference throughput (median of repeats) and batch-1 latency percentiles."""
    big = x[:batch]
    throughput = time_calls(lambda: predict_batch(big), sync, warmup=2, repeats=repeats)
    single = x[:1]
    latency = time_calls(lambda: predict_batch(single), sync, warmup=10, repeats=latency_calls)
    return {
        "inference_images_per_sec": len(big) / float(np.median(throughput)),
        "inference_batch": float(len(big)),
        "latency_p50_ms": float(np.percentile(latency, 50) * 1e3),
        "latency_p95_ms": float(np.percentile(latency, 95) * 1e3),
    }


def timed_epochs(run_epoch: Callable[[], object], sync: Callable[[], None], images: int, repeats: int) -> list[float]:
    """Images/s of `repeats` calls of `run_epoch`, after one untimed warm-up call."""
    run_epoch()
    clock = Stopwatch(sync)
    rates = []
    for _ in range(repeats):
        clock.start()
        run_epoch()
        rates.append(images / clock.read())
    return rates
