"""How long runs will take, before any starts: their training FLOPs over speeds measured earlier.

A run's work is images x epochs x training FLOPs per image (the layer description's count). Its
speed is the median achieved training GFLOP/s of completed, quietly timed runs in the results
folders at hand (the user's, then the project's reference results; runs timed under load only
where no quiet run was), taken from the closest match:
the same variant, backend, device and cores; then backend, device and cores; then backend and
device. Each run adds the time measured around its training (data, baseline, evaluation, logging).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lenet_bench.data.registry import DATASETS
from lenet_bench.engine.plan import Job
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import ResultsError, ResultsFolder

# Around training, per run, when nothing measured says otherwise: data, baseline (cached), evaluation,
# inference timing and MLflow logging took 2-6 s per run in the reference suite.
DEFAULT_OVERHEAD_S = 4.0
REFERENCE_RESULTS = Path("results/reference")  # the project's measured speeds, for the estimate on a new machine


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
class Estimate:
    seconds: float  # NaN when no run of this backend and device was ever measured
    source: str  # which measurements it comes from


class SpeedBook:
    """Measured training speeds, looked up for a job (see the module's docstring)."""

    def __init__(self, rows: Iterable[ResultRow]):
        self._speeds: dict[tuple, list[float]] = {}
        overheads = []
        for row in rows:
            if row.status is not Status.COMPLETED or not row.achieved_gflops:
                continue
            quiet = row.timing != "loaded"
            for key in self._keys(row.spec, row.backend, row.device, int(row.cores or 0)):
                self._speeds.setdefault((quiet, *key), []).append(row.achieved_gflops)
            if row.train_seconds is not None and row.eval_seconds is not None:
                overheads.append(row.eval_seconds + (row.data_seconds or 0.0))
        self.overhead_s = max(DEFAULT_OVERHEAD_S, statistics.median(overheads)) if overheads else DEFAULT_OVERHEAD_S

    @staticmethod
    def _keys(spec: str, backend: str, device: str, cores: int) -> list[tuple]:
        return [("variant", spec, backend, device, cores), ("backend", backend, device, cores),
                ("device", backend, device)]

    def estimate(self, job: Job, cores: int, work: float | None = None) -> Estimate:
        work = training_flops(job) if work is None else work
        for key in self._keys(job.variant.name, job.backend, job.device, cores):
            for quiet in (True, False):  # speeds taken under load only where nothing quiet was measured
                speeds = self._speeds.get((quiet, *key))
                if speeds:
                    gflops = statistics.median(speeds)
                    return Estimate(work / (gflops * 1e9) + self.overhead_s,
                                    f"{key[0]} measured ({len(speeds)} run(s), {gflops:.1f} GFLOP/s)")
        return Estimate(math.nan, f"no {job.backend}/{job.device} run measured yet")


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


def invocation_seconds(estimates: list[Estimate], capacity: int) -> float:
    """Wall time of runs shared by `capacity` workers (longest first keeps them busy to near the end)."""
    known = [e.seconds for e in estimates if math.isfinite(e.seconds)]
    if not known:
        return math.nan
    return max(sum(known) / max(capacity, 1), max(known))
