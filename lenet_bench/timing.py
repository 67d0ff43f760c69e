"""Honest clocks: warm-up apart, device synchronized before every reading.

Backends hand in a `sync` function (a no-op on CPU, `torch.cuda.synchronize` on a GPU);
every clock reading here happens after calling it.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable

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


def inference_figures(predict_batch: Callable[[np.ndarray], object], sync: Callable[[], None], x: np.ndarray,
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


def peak_host_rss_mb() -> float:
    """The process's peak resident memory so far (a high-water mark over its whole life)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024 / 1024 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux
