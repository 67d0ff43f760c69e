"""Where a run trains: the `Device` type and the CPU cores this process may use (a leaf, importing
nothing of lenet_bench).

A `Device` is also its name as a string ("cpu", "gpu"), so specs, rows, MLflow params and the
command line keep the plain words while the code asks `device.is_gpu` instead of comparing text.
"""

from __future__ import annotations

import os
from enum import Enum


class Device(str, Enum):
    CPU = "cpu"
    GPU = "gpu"

    def __str__(self) -> str:  # the word, in f-strings and file names, as the enum's value
        return self.value

    @property
    def is_gpu(self) -> bool:
        return self is Device.GPU


DEVICES: tuple[str, ...] = tuple(device.value for device in Device)


def as_device(device: str | Device) -> Device:
    """The `Device` named by `device`; a ValueError naming the choices for any other word."""
    try:
        return Device(device)
    except ValueError:
        raise ValueError(f"unknown device {device!r}; expected one of: {', '.join(DEVICES)}") from None


def allowed_cores() -> list[int]:
    """The cores this process may run on (taskset, cgroups, a worker's pinning), not every core of the host."""
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
