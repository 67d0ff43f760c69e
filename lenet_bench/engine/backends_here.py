"""What each backend can do on this machine, asked once per invocation.

Whether a backend is installed, whether its framework can use a device here, the framework versions
that go into every run's fingerprint, and whether the machine has an NVIDIA driver do not change while
an invocation plans its jobs, so they are asked once per backend (and device) and the answers kept
for the invocation, not for the process: a later invocation in the same process (a test, a notebook)
asks again. Whether this process can host a backend's engine is not kept: it changes as runs load
their frameworks (`backends.host_conflict`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from lenet_bench import backends
from lenet_bench.device import Device
from lenet_bench.engine import hardware
from lenet_bench.engine.plan import Job

T = TypeVar("T")


class BackendsHere:
    def __init__(self) -> None:
        self._answers: dict[tuple[str, ...], object] = {}

    def _once(self, key: tuple[str, ...], ask: Callable[[], T]) -> T:
        if key not in self._answers:
            self._answers[key] = ask()
        return self._answers[key]  # type: ignore[return-value]

    def installed_reason(self, name: str) -> str | None:
        return self._once(("installed", name), lambda: backends.installed_reason(name))

    def unavailable_reason(self, name: str, device: Device) -> str | None:
        return self._once(("unavailable", name, device.value), lambda: backends.unavailable_reason(name, device))

    def framework_versions(self, name: str) -> str:
        return self._once(("versions", name), lambda: backends.framework_versions(name))

    def has_gpu_driver(self) -> bool:
        return self._once(("gpu driver",), lambda: bool(hardware.nvidia_driver_version()))

    def skip_reason(self, job: Job, *, cluster: bool, inline: bool) -> str | None:
        """Why `job` cannot run here, the first of: device, then backend (the data come after), or None.

        `inline`: this process runs it, so the backend itself is asked (does its framework see the GPU);
        on a cluster GPU runs go to GPU workers, so this machine's GPU says nothing.
        """
        if job.device == Device.GPU and not cluster and not self.has_gpu_driver():
            return "no GPU on this machine (no NVIDIA driver found)"
        reason = self.installed_reason(job.backend)
        if reason is None and inline and not backends.host_conflict(job.backend):
            reason = self.unavailable_reason(job.backend, job.device)
        return reason
