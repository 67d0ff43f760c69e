"""How long runs will take, before any starts: their training FLOPs over speeds measured earlier.

A run's work is images x epochs x training FLOPs per image (the layer description's count). Its
speed is the median achieved training GFLOP/s of completed, quietly timed runs in the results
folders at hand (the user's, then the project's reference results; runs timed under load only
where no quiet run was), taken from the closest match:
the same variant, backend, device and cores; then the same variant on other cores, scaled by how
this backend's speed changes between those core counts (the median ratio over the variants measured
on both: a 20/50 LeNet on one core of a worker runs 0.7x its two-core speed, far from the backend's
median over small and large models); then runs of the same batch size on that backend and device, on any
cores (one image per update, the 1998 procedure, ran at 0.9 GFLOP/s on PyTorch and 1.8 on Keras on one core of
the reference machine, against a median of 21 for batched runs; its tiny steps gain little from more cores);
then backend, device and cores; then backend and device.
Each run adds the time measured around its training (data, baseline, evaluation, logging).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lenet_bench.data.registry import DATASETS
from lenet_bench.engine.plan import Job
from lenet_bench.reference_folder import REFERENCE_RESULTS  # the project's measured speeds, for a new machine
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import ResultsError, ResultsFolder

# Around training, per run, when nothing measured says otherwise: data, baseline (cached), evaluation,
# inference timing and MLflow logging took 2-6 s per run in the reference suite.
DEFAULT_OVERHEAD_S = 4.0


def training_images(job: Job, dataset_size: int | None = None) -> int:
    """Images one epoch of `job` trains on: the subset and validation split applied, and any step cap."""
    d, t = job.spec.data, job.spec.train
    size = dataset_size if dataset_size is not None else (DATASETS[d.dataset].n_train if d.dataset in DATASETS else 0)
    n = min(d.subset or size, size)
    n_fit = int(n * (1 - d.validation_split))
    return min(n_fit, t.max_steps_per_epoch * t.batch_size) if t.max_steps_per_epoch else n_fit


def training_flops(job: Job, dataset_size: int | None = None) -> float:
    return float(training_images(job, dataset_size) * job.spec.train.epochs * job.spec.summary().train_flops)


@dataclass(frozen=True)
class TimeEstimate:
    seconds: float  # NaN when no run of this backend and device was ever measured
    source: str  # which measurements it comes from


class SpeedBook:
    """Measured training speeds, looked up for a job (see the module's docstring)."""

    def __init__(self, rows: Iterable[ResultRow]):
        # (quiet, key) -> GFLOP/s, the key one of: ("variant", variant, backend, device, cores),
        # ("batch", backend, device, batch size), ("backend", backend, device, cores), ("device", backend, device)
        self._speeds: dict[tuple, list[float]] = {}
        overheads = []
        for row in rows:
            if row.status is not Status.COMPLETED or not row.achieved_gflops:
                continue
            quiet = row.timing != "loaded"
            for key in self._keys(row.spec, row.backend, row.device, int(row.cores or 0), row.batch_size):
                self._speeds.setdefault((quiet, *key), []).append(row.achieved_gflops)
            if row.train_seconds is not None and row.eval_seconds is not None:
                overheads.append(row.eval_seconds + (row.data_seconds or 0.0))
        self.overhead_s = max(DEFAULT_OVERHEAD_S, statistics.median(overheads)) if overheads else DEFAULT_OVERHEAD_S

    @staticmethod
    def _keys(spec: str, backend: str, device: str, cores: int, batch_size: int | None) -> list[tuple]:
        """The keys a measurement is filed under, the closest first (a row of old has no batch size)."""
        by_batch = [("batch", backend, device, batch_size)] if batch_size else []
        return [("variant", spec, backend, device, cores), *by_batch, ("backend", backend, device, cores),
                ("device", backend, device)]

    def estimate(self, job: Job, cores: int, work: float | None = None) -> TimeEstimate:
        work = training_flops(job) if work is None else work
        exact, by_batch, by_backend, by_device = self._keys(job.variant.name, job.backend, job.device, cores,
                                                            job.spec.train.batch_size)
        for quiet in (True, False):  # speeds taken under load only where nothing quiet was measured
            found = self._measured(quiet, exact) or self._on_other_cores(quiet, exact)
            if found:
                return TimeEstimate(work / (found[0] * 1e9) + self.overhead_s, found[1])
        for key in (by_batch, by_backend, by_device):
            for quiet in (True, False):
                found = self._measured(quiet, key)
                if found:
                    return TimeEstimate(work / (found[0] * 1e9) + self.overhead_s, found[1])
        return TimeEstimate(math.nan, f"no {job.backend}/{job.device} run measured yet")

    def _measured(self, quiet: bool, key: tuple) -> tuple[float, str] | None:
        speeds = self._speeds.get((quiet, *key))
        if not speeds:
            return None
        gflops = statistics.median(speeds)
        return gflops, f"{key[0]} measured ({len(speeds)} run(s), {gflops:.1f} GFLOP/s)"

    def _variant_speeds(self, quiet: bool, backend: str, device: str, cores: int) -> dict[str, float]:
        """Median GFLOP/s of every variant measured with `backend` on `device` and `cores`."""
        return {key[2]: statistics.median(speeds) for key, speeds in self._speeds.items()
                if key[0] == quiet and key[1] == "variant" and key[3:] == (backend, device, cores)}

    def _on_other_cores(self, quiet: bool, exact: tuple) -> tuple[float, str] | None:
        """The variant's speed on the nearest other core count, scaled to `cores` by how the backend's speed
        changes between the two: the median ratio over variants measured on both, else the ratio of the
        backend's medians; None when the variant or the backend was never measured on both counts."""
        _, variant, backend, device, cores = exact
        others = sorted({key[5] for key in self._speeds if key[0] == quiet and key[1:5] == exact[:4]} - {cores},
                        key=lambda count: abs(count - cores))
        for other in others:
            speed = statistics.median(self._speeds[(quiet, "variant", variant, backend, device, other)])
            wanted = self._variant_speeds(quiet, backend, device, cores)
            ratios = [wanted[name] / measured for name, measured in
                      self._variant_speeds(quiet, backend, device, other).items() if name in wanted]
            if ratios:
                scale, basis = statistics.median(ratios), f"the median ratio of {len(ratios)} variant(s) on both"
            else:
                here, there = (self._speeds.get((quiet, "backend", backend, device, count)) for count in (cores, other))
                if not here or not there:
                    continue
                scale, basis = statistics.median(here) / statistics.median(there), "the ratio of the backend's medians"
            return speed * scale, f"variant measured on {other} core(s), x{scale:.2f} for {cores} ({basis})"
        return None


def measured_speeds(results: Path) -> SpeedBook:
    """The speeds measured in `results` and in the project's reference results. A folder that cannot be read
    is left out: an estimate is no reason to fail, nor to lose the other folder's speeds."""
    rows: list[ResultRow] = []
    for folder in dict.fromkeys(path.resolve() for path in (Path(results), REFERENCE_RESULTS)):
        try:
            rows += ResultsFolder(folder).read()
        except ResultsError:
            pass
    return SpeedBook(rows)


def invocation_seconds(estimates: list[TimeEstimate], capacity: int) -> float:
    """Wall time of runs shared by `capacity` workers (longest first keeps them busy to near the end)."""
    known = [e.seconds for e in estimates if math.isfinite(e.seconds)]
    if not known:
        return math.nan
    return max(sum(known) / max(capacity, 1), max(known))
