"""MLflow's system metrics, sampled where a run executes and handed back as plain data.

A worker cannot log to the store (only the recorder does), so this runs MLflow's own
collectors (CPU, memory, disk, network, and the GPU where pynvml finds one) on a thread and
keeps the aggregated samples; the recorder logs them as the run's `system/` metrics.
"""

from __future__ import annotations

import threading
import time

Sample = tuple[int, int, dict[str, float]]  # (step, timestamp in ms, {system/<name>: value})
INTERVAL_S = 5.0  # often enough for epoch-long runs, too rare to disturb the timings


def _monitors() -> list:
    from mlflow.system_metrics.metrics.cpu_monitor import CPUMonitor
    from mlflow.system_metrics.metrics.disk_monitor import DiskMonitor
    from mlflow.system_metrics.metrics.network_monitor import NetworkMonitor

    monitors = [CPUMonitor(), DiskMonitor(), NetworkMonitor()]
    try:
        from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor

        monitors.append(GPUMonitor())
    except Exception:  # no NVIDIA GPU or no pynvml: MLflow itself goes on without one
        pass
    return monitors


class SystemSampler:
    """Samples every `interval` seconds on a daemon thread between `start()` and `stop()`."""

    def __init__(self, interval: float = INTERVAL_S):
        self.interval = interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._monitors: list = []

    def start(self) -> SystemSampler:
        self._monitors = _monitors()
        self._thread = threading.Thread(target=self._loop, name="lenet_bench-system-metrics", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        step = 0
        while not self._stop.wait(self.interval):
            values: dict[str, float] = {}
            for monitor in self._monitors:
                monitor.collect_metrics()
                values.update(monitor.aggregate_metrics())
                monitor.clear_metrics()
            self.samples.append((step, int(time.time() * 1000), {f"system/{k}": float(v) for k, v in values.items()}))
            step += 1

    def stop(self) -> list[Sample]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return self.samples
