"""One results row per run: its typed fields, its statuses, and where each field lives in MLflow.

`ResultRow` is the single definition of what a run records. Its fields are, in order, the
columns of `results/runs.csv`; each field says whether MLflow keeps it as a param, a metric
or a tag (and under which key). `convert.py` turns MLflow runs, rows and CSV tables into
each other from this definition alone, so adding a metric or a status is one edit here.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lenet_bench.results.identity import RunIdentity

# MLflow tag names shared by the recorder and the readers.
KIND_TAG = "lenet_bench.kind"  # invocation | run | baseline
STATUS_TAG = "lenet_bench.status"
FINGERPRINT_TAG = "lenet_bench.fingerprint"
DRIVER_TAG = "lenet_bench.driver"  # host:pid:start of the process that records a run, to find orphans


class Kind(str, enum.Enum):
    INVOCATION = "invocation"
    RUN = "run"
    BASELINE = "baseline"


class Status(str, enum.Enum):
    """What became of a run. A row is only ever replaced by one of the same or a better rank."""

    COMPLETED = "completed"
    FAILED = "failed"
    KILLED = "killed"
    SKIPPED = "skipped"

    @property
    def rank(self) -> int:
        return {Status.COMPLETED: 3, Status.FAILED: 2, Status.KILLED: 2, Status.SKIPPED: 1}[self]

    @property
    def has_numbers(self) -> bool:
        return self is Status.COMPLETED


def runs_with_numbers(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of a results frame whose run has numbers (Status.has_numbers); a frame without statuses as it is."""
    if "status" not in frame:
        return frame
    return frame[frame["status"].astype(str).isin([status.value for status in Status if status.has_numbers])]


# Where a field lives in MLflow: a param, a metric, a tag, the run's id, or nowhere (results/ only).
PARAM, METRIC, TAG, RUN_ID, LOCAL = "param", "metric", "tag", "run_id", "local"


def _field(kind: str, default: Any = None, key: str | None = None) -> Any:
    return field(default=default, metadata={"mlflow": kind, "key": key})


@dataclass
class ResultRow:
    # ---- identity (RunIdentity's fields, then the spec's design choices and sizes)
    run: str = _field(LOCAL, "")  # RunIdentity.name: variant[@overrides]/backend/device/seed<N>
    spec: str = _field(PARAM, "", key="variant")
    base_spec: str = _field(PARAM, "")
    overrides: str = _field(PARAM, "")  # e.g. "epochs=1,max_steps=50"; empty for the spec as written
    backend: str = _field(PARAM, "")
    device: str = _field(PARAM, "")
    seed: int = _field(PARAM, 0)
    architecture: str = _field(PARAM, "")
    activation: str = _field(PARAM, "")
    pooling: str = _field(PARAM, "")
    padding: str = _field(PARAM, "")
    input_size: str = _field(PARAM, "")
    optimizer: str = _field(PARAM, "")
    batch_size: int | None = _field(PARAM)  # images per update: 1 (the 1998 procedure) runs at a fraction of the FLOP/s
    dataset: str = _field(PARAM, "")
    params: int | None = _field(METRIC)
    flops: int | None = _field(METRIC)
    train_flops: int | None = _field(METRIC)
    epochs: int | None = _field(METRIC)
    min_test_accuracy: float | None = _field(PARAM, key="expect.min_test_accuracy")  # None: not judged (overrides)
    reference_accuracy: float | None = _field(PARAM, key="reference.test_accuracy")
    reference_notes: str = _field(PARAM, "", key="reference.notes")  # how the setup deviates from the published one
    # ---- what became of it
    status: Status = _field(TAG, Status.SKIPPED, key=STATUS_TAG)
    reason: str = _field(TAG, "")
    met_expectation: bool | None = _field(TAG)
    # ---- results
    test_accuracy: float | None = _field(METRIC)
    test_accuracy_pct: float | None = _field(METRIC)  # what a person compares in the MLflow table and charts
    test_error_pct: float | None = _field(METRIC)
    test_loss: float | None = _field(METRIC)
    baseline_accuracy: float | None = _field(METRIC)
    delta_to_baseline: float | None = _field(METRIC)
    gap_to_baseline_pp: float | None = _field(METRIC)
    final_train_accuracy: float | None = _field(METRIC)
    final_val_accuracy: float | None = _field(METRIC)
    target_accuracy: float | None = _field(PARAM, key="target_accuracy")  # the spec's; None: no time to target
    time_to_target_s: float | None = _field(METRIC)  # training and evaluations until the target (MLPerf's count)
    epochs_to_target: int | None = _field(METRIC)
    # ---- timings (see timing / other_load_cores for the conditions they were taken under)
    train_seconds: float | None = _field(METRIC)
    warmup_seconds: float | None = _field(METRIC)
    steady_seconds: float | None = _field(METRIC)
    train_images_per_sec: float | None = _field(METRIC)
    achieved_gflops: float | None = _field(METRIC)
    data_seconds: float | None = _field(METRIC)
    data_prepare_seconds: float | None = _field(METRIC)
    eval_seconds: float | None = _field(METRIC)
    inference_images_per_sec: float | None = _field(METRIC)
    inference_batch: int | None = _field(METRIC)
    latency_p50_ms: float | None = _field(METRIC)
    latency_p95_ms: float | None = _field(METRIC)
    peak_rss_mb: float | None = _field(METRIC)  # the run's own peak (the process's high-water mark reset at its start)
    rss_at_start_mb: float | None = _field(METRIC)
    peak_gpu_mb: float | None = _field(METRIC)
    other_load_cores: float | None = _field(METRIC)  # cores' worth of other processes' work on the run's cores
    # ---- where and how it ran
    timing: str = _field(TAG, "")  # quiet | loaded: timings taken with other work on the run's cores are flagged
    executor: str = _field(TAG, "")  # inline | workers | dask
    concurrent_workers: int | None = _field(TAG)
    cores: int | None = _field(TAG)  # cores the run was given
    host: str = _field(TAG, "")
    hardware: str = _field(TAG, "")  # the class timings belong to: CPU model and cores given, or the GPU
    cpu_model: str = _field(TAG, "")
    gpu_name: str = _field(TAG, "")
    gpu_driver: str = _field(TAG, "")
    cuda_version: str = _field(TAG, "")
    framework_version: str = _field(TAG, "")
    code_version: str = _field(TAG, "")
    fingerprint: str = _field(TAG, "", key=FINGERPRINT_TAG)
    finished_at: str = _field(TAG, "")  # ISO 8601, UTC
    mlflow_run_id: str = _field(RUN_ID, "")

    @classmethod
    def of(cls, identity: RunIdentity, **values: Any) -> ResultRow:
        """The row of the run `identity` names, with `values` set."""
        return cls(run=identity.name, spec=identity.variant, base_spec=identity.base_spec,
                   overrides=identity.overrides, backend=identity.backend, device=identity.device,
                   seed=identity.seed, **values)

    def update(self, **values: Any) -> ResultRow:
        """A copy with `values` set; unknown names are an error, not a silent new column."""
        return dataclasses.replace(self, **values)

    @property
    def identity(self) -> RunIdentity:
        return RunIdentity(self.spec, self.base_spec, self.overrides, self.backend, self.device, self.seed)

    @property
    def setup(self) -> str:
        return self.identity.setup

    def meets(self, expected: float | None) -> bool | None:
        """Whether the run's test accuracy reaches `expected`: None when there is nothing to judge (no expectation,
        or a run without numbers). The one rule for the row's met_expectation and for `check`'s verdicts."""
        if expected is None or not self.status.has_numbers or self.test_accuracy is None:
            return None
        return self.test_accuracy >= expected

    def outcome_line(self, reused: bool = False) -> str:
        """The run's line on the console: its accuracy against the baseline and how long it trained (or that it
        was completed before), or what became of it and why."""
        if not (self.status.has_numbers and self.test_accuracy is not None):
            return f"  -> {self.run}: {self.status.value}" + (f": {self.reason}" if self.reason else "")
        gap = (f", baseline {100 * self.baseline_accuracy:.2f}% ({self.gap_to_baseline_pp:+.2f} pp)"
               if self.baseline_accuracy is not None and self.gap_to_baseline_pp is not None else "")
        when = ("completed before" if reused else
                f"in {self.train_seconds:.1f} s of training" if self.train_seconds is not None else "")
        verdict = ("" if self.met_expectation is not False else
                   f"  [below the expected {100 * (self.min_test_accuracy or 0):.2f}%]")
        loaded = "  [timed with other work on its cores]" if self.timing == "loaded" else ""
        return f"  -> {self.run}: test accuracy {100 * self.test_accuracy:.2f}%{gap}, {when}{verdict}{loaded}"

    @property
    def ok(self) -> bool:
        """Not failed or killed, and (when it has a number) at or above its spec's expectation."""
        return self.status in (Status.COMPLETED, Status.SKIPPED) and self.met_expectation is not False


FIELDS: tuple[dataclasses.Field, ...] = dataclasses.fields(ResultRow)
# The design choices a user compares (the keys of Spec.axes()), columns of every row.
AXIS_COLUMNS = ("architecture", "activation", "pooling", "padding", "input_size", "optimizer", "dataset")
COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS)
METRIC_COLUMNS: tuple[str, ...] = tuple(f.name for f in FIELDS if f.metadata["mlflow"] == METRIC)
# A quiet run had less than this many cores' worth of other work on its cores (the sampler itself,
# MLflow's and the OS's housekeeping stay well below it).
LOADED_THRESHOLD_CORES = 0.2


def mlflow_key(f: dataclasses.Field) -> str:
    return f.metadata["key"] or f.name


def timing_condition(other_load_cores: float | None) -> str:
    if other_load_cores is None:
        return ""
    return "loaded" if other_load_cores >= LOADED_THRESHOLD_CORES else "quiet"
