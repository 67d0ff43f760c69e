"""Where a run executes: host, CPU model, the cores it may use, the GPU, and what else ran on its cores.

Everything here is read from the operating system (psutil, /proc), without a framework.
"""

from __future__ import annotations

import platform
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from lenet_bench.device import Device


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return re.sub(r"\s+", " ", line.split(":", 1)[1]).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def nvidia_driver_version() -> str:
    """The NVIDIA kernel driver's version, or '' where there is none."""
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        found = re.search(r"Kernel Module\s+(?:for \S+\s+)?([\d.]+)", text)
        if found:
            return found.group(1)
    except OSError:
        pass
    try:
        answer = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, timeout=10, check=True)
        return answer.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        return ""


def hardware_class(device: Device, cores: int, gpu_name: str = "") -> str:
    """What a timing belongs to: the GPU for GPU runs, else the CPU model and the cores the run was given."""
    if device == Device.GPU and gpu_name:
        return gpu_name
    return f"{cpu_model()}, {cores} core{'s' if cores != 1 else ''}"


def host() -> str:
    return socket.gethostname()


# ------------------------------------------------------------------ load and memory of one run

MIN_SPAN_S = 1.0


@dataclass
class CoreLoad:
    """Other processes' work on the given cores while this process ran: busy core-seconds of those
    cores minus this process's own CPU time, per second of wall time."""

    cores: list[int]
    _busy: float = 0.0
    _own: float = 0.0
    _wall: float = 0.0

    def start(self) -> CoreLoad:
        self._busy, self._own, self._wall = self._busy_seconds(), _own_cpu_seconds(), time.monotonic()
        return self

    def other_cores(self) -> float | None:
        """None for a span under MIN_SPAN_S: the CPU counters tick too coarsely to tell."""
        wall = time.monotonic() - self._wall
        if wall < MIN_SPAN_S:
            return None
        other = (self._busy_seconds() - self._busy) - (_own_cpu_seconds() - self._own)
        return max(0.0, other / wall)

    def _busy_seconds(self) -> float:
        per_cpu = psutil.cpu_times(percpu=True)
        return sum(_busy(per_cpu[i]) for i in self.cores if i < len(per_cpu))


def _busy(times) -> float:
    idle = times.idle + getattr(times, "iowait", 0.0)
    return sum(times) - idle - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)


def _own_cpu_seconds() -> float:
    times = psutil.Process().cpu_times()
    return times.user + times.system + times.children_user + times.children_system


def reset_peak_rss() -> float:
    """Reset this process's peak resident memory to its current size (Linux); return that size in MB."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak stays the process's high-water mark
    return psutil.Process().memory_info().rss / 2**20


def peak_rss_mb() -> float:
    """Peak resident memory since the last reset (VmHWM), else the process's high-water mark."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
