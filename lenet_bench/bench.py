"""The bench: how fast each backend trains a variant, next to its plain loop and the machine's ceiling.

For each selected variant x backend x device, without full training:

- harness: the backend's own `train()` on `steps x batch` images for 1 + `repeats` short
  epochs; the first epoch pays for allocation, kernel selection and tracing and is
  reported apart, the others give `repeats` samples of training images/s;
- reference: the backend's `reference_loop`, the same steps written the usual way for the
  framework (a DataLoader loop, `model.fit` on NumPy arrays), same data, batch size and
  optimizer, warm-up epoch excluded; the harness/reference ratio says what the harness's
  speed choices are worth;
- ceiling: a large float32 matrix product on the same device, the most FLOP/s its cores
  deliver; a row's share of it is images/s x analytic training FLOPs per image / ceiling.

With `full`, harness and reference both train the spec's whole training split for its
epochs (the first epoch is the warm-up one) and both report test accuracy: the speed
choices must not cost accuracy.

Harness and reference alternate for `rounds` rounds, so that a machine whose speed drifts
(a shared VM: the matmul ceiling here moved between 134 and 175 GFLOP/s within an hour)
slows both alike; the ratio is the median of the per-round ratios, with its min-max. The
load on the machine is measured while each row runs and reported with it.

Every clock reading follows the device's sync. Rates are medians, spreads min-max.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from lenet_bench import backends
from lenet_bench.backends import BenchBackend
from lenet_bench.data import DataError, PreparedData
from lenet_bench.device import Device, allowed_cores
from lenet_bench.engine import hardware
from lenet_bench.engine.execute import DATA_UNAVAILABLE, helper_engine
from lenet_bench.engine.plan import Job
from lenet_bench.engine.worker_context import WorkerContext, in_this_process
from lenet_bench.results.row import Status
from lenet_bench.spec import Spec
from lenet_bench.training.result import SilentProgress

TEST_IMAGES = 2048  # enough for the inference timings (batch 1024, batch-1 latency)
CEILING_SIZE = 4096  # 4096^3 x 2 = 137 GFLOP per product: big enough for the BLAS to reach its peak (2048 gives ~30% less here)
CEILING_REPEATS = 5


@dataclass(frozen=True)
class BenchSettings:
    steps: int = 50
    repeats: int = 5
    rounds: int = 3
    batch_size: int | None = None
    full: bool = False
    reference: bool = True
    data_dir: str | None = None


def _median(samples: list[float]) -> float:
    return float(np.median(samples)) if samples else math.nan


@dataclass
class BenchRow:
    variant: str
    backend: str
    device: Device
    batch_size: int
    train_flops: int  # analytic, per training image
    steps: int | None = None  # optimizer steps per timed epoch; None: the whole training split
    repeats: int = 0  # timed epochs
    train_images: int = 0  # per epoch
    status: Status = Status.COMPLETED  # as a run's: completed (measured), skipped or failed
    reason: str = ""
    harness: list[float] = field(default_factory=list)  # images/s, one sample per timed epoch, every round
    reference: list[float] = field(default_factory=list)
    round_ratios: list[float] = field(default_factory=list)  # harness/reference medians of each round
    warmup_seconds: float = math.nan  # the harness's first epoch
    harness_accuracy: float = math.nan  # test accuracy at the end (meaningful with --full)
    reference_accuracy: float = math.nan
    inference: dict[str, float] = field(default_factory=dict)  # training.timing.inference_timings
    other_load_cores: float = math.nan  # other processes' work on this process's cores while the row ran
    hardware: str = ""

    def record(self, ceiling: float | None) -> dict[str, object]:
        """The row as flat numbers (NaN where not measured), for the table and the CSV."""
        harness, reference = _median(self.harness), _median(self.reference)
        ceiling = ceiling or math.nan
        return {
            "variant": self.variant, "backend": self.backend, "device": str(self.device), "batch_size": self.batch_size,
            "steps": self.steps or "all", "repeats": self.repeats, "train_images": self.train_images,
            "status": self.status.value, "reason": self.reason,
            "harness_images_per_sec": harness,
            "harness_min": min(self.harness, default=math.nan), "harness_max": max(self.harness, default=math.nan),
            "reference_images_per_sec": reference,
            "harness_to_reference": _median(self.round_ratios) if self.round_ratios else harness / reference,
            "ratio_min": min(self.round_ratios, default=math.nan), "ratio_max": max(self.round_ratios, default=math.nan),
            "rounds": len(self.round_ratios),
            "train_mflops_per_image": self.train_flops / 1e6,
            "ceiling_gflops": ceiling / 1e9,
            "ceiling_images_per_sec": ceiling / self.train_flops,
            "fraction_of_ceiling": harness * self.train_flops / ceiling,
            "warmup_epoch_seconds": self.warmup_seconds,
            "harness_test_accuracy": self.harness_accuracy, "reference_test_accuracy": self.reference_accuracy,
            "inference_images_per_sec": self.inference.get("inference_images_per_sec", math.nan),
            "latency_p50_ms": self.inference.get("latency_p50_ms", math.nan),
            "latency_p95_ms": self.inference.get("latency_p95_ms", math.nan),
            "other_load_cores": self.other_load_cores, "hardware": self.hardware,
        }


def bench_jobs(jobs: list[Job]) -> list[Job]:
    """One job per variant x backend x device (its first seed): timing needs no other seed."""
    first_of_each: dict[tuple[str, str, str], Job] = {}
    for job in jobs:
        first_of_each.setdefault((job.variant.name, job.backend, job.device), job)
    return list(first_of_each.values())


def bench_spec(spec: Spec, settings: BenchSettings) -> Spec:
    """The spec trained for a warm-up epoch plus `repeats` timed ones (its own epochs with `full`), and the bench's data."""
    train = {**({} if settings.full else {"epochs": settings.repeats + 1}),
             **({"batch_size": settings.batch_size} if settings.batch_size else {})}
    spec = spec.model_copy(update={"train": spec.train.model_copy(update=train)})
    if settings.full:
        return spec
    # Exactly `steps` full batches of training images, no validation split, enough test images.
    data = {"subset": settings.steps * spec.train.batch_size, "test_subset": TEST_IMAGES, "validation_split": 0.0}
    return spec.model_copy(update={"data": spec.data.model_copy(update=data)})


def bench_row(context: WorkerContext, job: Job, settings: BenchSettings) -> BenchRow:
    """Measure one row here, or, when this process cannot host the backend, in the context's helper process for
    its engine (as `run` executes such jobs: started once, kept for the next rows, ended with the context)."""
    if backends.host_conflict(job.backend):
        return context.in_engine_process(helper_engine(job), in_this_process, bench_row, job, settings)
    spec = bench_spec(job.spec, settings)
    steps = None if settings.full else settings.steps
    row = BenchRow(job.variant.name, job.backend, job.device, spec.train.batch_size, spec.summary().train_flops,
                   steps=steps, repeats=spec.train.epochs - 1)
    reason = backends.unavailable_reason(job.backend, job.device)
    if reason:
        row.status, row.reason = Status.SKIPPED, reason
        return row
    try:
        data, _ = context.data(settings.data_dir).prepared(spec.data)  # the context's, kept across rows
    except (DataError, ValueError) as err:  # ValueError: more images asked for than the dataset holds
        row.status, row.reason = Status.SKIPPED, f"{DATA_UNAVAILABLE}: --steps {settings.steps} x batch " \
                                           f"{spec.train.batch_size}: {err}"
        return row
    backend = backends.activate(job.backend)
    if settings.reference and not isinstance(backend, BenchBackend):
        row.status, row.reason = Status.SKIPPED, f"{job.backend} has no plain loop of its own (reference_loop) to compare"
        return row
    row.train_images = len(data.x_train)
    row.hardware = hardware.hardware_class(job.device, len(allowed_cores()),
                                           backend.device_info(job.device).get("gpu_name", ""))
    load = hardware.CoreLoad(allowed_cores()).start()
    rounds = 1 if settings.full else settings.rounds  # a full training is long enough to time once
    try:
        for _ in range(rounds):
            _measure_round(backend, job, spec, data, steps, row, settings.reference)
    except Exception as err:  # one broken backend must not hide the other rows
        row.status, row.reason = Status.FAILED, f"{type(err).__name__}: {err}"
    other = load.other_cores()
    row.other_load_cores = other if other is not None else math.nan
    return row


def _measure_round(backend: backends.Backend, job: Job, spec: Spec, data: PreparedData, steps: int | None,
                   row: BenchRow, reference: bool) -> None:
    model = backend.build(spec, job.seed, job.device)
    result = backend.train(model, spec, data, job.seed, job.device, SilentProgress(), max_steps_per_epoch=steps)
    rates = [record.images / record.seconds for record in result.history[1:]]
    row.harness += rates
    row.warmup_seconds, row.harness_accuracy, row.inference = \
        result.history[0].seconds, result.test_accuracy, result.timings
    if reference:
        assert isinstance(backend, BenchBackend)  # bench_row skips a backend without one
        measured = backend.reference_loop(spec, data, job.seed, job.device, row.repeats)
        row.reference += measured.rates
        row.reference_accuracy = measured.test_accuracy
        row.round_ratios.append(_median(rates) / _median(measured.rates))


def measure_ceiling(device: Device) -> tuple[float, str] | None:
    """(FLOP/s, backend) of a large float32 product on `device`, with the first registered backend that can."""
    for name in backends.names():
        if backends.host_conflict(name) or backends.unavailable_reason(name, device):
            continue
        backend = backends.activate(name)
        if isinstance(backend, BenchBackend):
            return backend.matmul_flops(device, CEILING_SIZE, CEILING_REPEATS), name
    return None
