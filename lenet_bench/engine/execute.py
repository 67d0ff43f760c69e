"""Executing one run: a module-level function from a picklable `Job` to a plain `JobResult`.

It runs wherever an executor sends it (this process, a pinned local worker, a Dask worker)
and never touches MLflow or results/: it loads the data, trains the baseline (cached on
disk), builds and trains the model, and hands back metrics, curves, predictions, timings,
the run's own peak memory and load, where it ran, MLflow's system metrics sampled here, and
the trained model as a file. The recorder, in the driver, logs all of it.

A backend whose engine conflicts with one this process already runs (Keras on TensorFlow
after Keras on JAX) executes in a fresh process of its own.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lenet_bench import backends
from lenet_bench.console import RunProgress
from lenet_bench.data import DataError
from lenet_bench.data.cache import DataCache
from lenet_bench.device import Device, allowed_cores
from lenet_bench.engine import hardware
from lenet_bench.engine.baseline import BaselineResult, logistic_regression_baseline
from lenet_bench.engine.phases import PhaseTimer
from lenet_bench.engine.plan import Job
from lenet_bench.engine.sampler import Sample, SystemSampler
from lenet_bench.engine.worker_context import WorkerContext, in_this_process, start_process
from lenet_bench.results.row import Status
from lenet_bench.training.checkpoint import Checkpoint, CheckpointError
from lenet_bench.training.loop import Diverged
from lenet_bench.training.result import Progress, RunResult

DATA_UNAVAILABLE = "data unavailable"


@dataclass
class DataInfo:
    dataset: str
    source: str
    key: str
    splits: tuple[str, ...]
    preprocessing: dict[str, Any]


@dataclass
class Provenance:
    host: str = ""
    cpu_model: str = ""
    cores: int = 0
    hardware: str = ""
    gpu_name: str = ""
    gpu_driver: str = ""
    cuda_version: str = ""
    framework_version: str = ""


@dataclass
class JobResult:
    """Plain data back from wherever the job ran."""

    name: str
    status: Status
    reason: str = ""
    result: RunResult | None = None  # its `model` replaced by `model_archive`
    test_labels: np.ndarray | None = None  # the true labels of result.test_predictions
    model_archive: bytes | None = None  # the model saved with MLflow's flavour, as tar bytes
    baseline: BaselineResult | None = None
    data: DataInfo | None = None
    provenance: Provenance = field(default_factory=Provenance)
    data_prepare_seconds: float = 0.0
    other_load_cores: float | None = None
    peak_rss_mb: float | None = None
    rss_at_start_mb: float | None = None
    system_metrics: list[Sample] = field(default_factory=list)
    wall_seconds: float = 0.0
    phases: dict[str, float] = field(default_factory=dict)  # seconds of each step of executing it (phases.py)
    traceback: str = ""
    notes: list[str] = field(default_factory=list)  # what went wrong around the run without failing it (its checkpoint)
    out_of_space: bool = False  # a write of the run (its checkpoint) found the disk full: the invocation stops


def execute_job(context: WorkerContext, job: Job, progress: Progress | None = None) -> JobResult:
    """Train and evaluate `job` here (or in the context's helper process for its engine when this process cannot
    host its backend), its data from the context that runs it (engine/worker_context.py)."""
    if job.backend_entry is not None and job.backend not in backends.names():
        backends.register(job.backend_entry)  # a worker knows only the built-in backends
    if backends.host_conflict(job.backend):
        return _in_own_process(context, job)
    outcome = None
    try:
        outcome = _execute(job, progress or RunProgress(job.name, job.spec.train.epochs, live=False),
                           context.data(job.data_dir))
    finally:
        with PhaseTimer(outcome.phases if outcome is not None else {})("framework release"):
            _release(job.backend)
    return outcome


def _release(backend_name: str) -> None:
    """Free what the finished run left in its framework: without it a process that runs many jobs
    (inline, a worker) keeps every run's model, compiled step and tensors and grows run after run."""
    try:
        backend = backends.activate(backend_name)
    except backends.BackendUnavailable:
        return
    backend.release()


def helper_engine(job: Job) -> str:
    """The name of the engine helper process that runs `job` when this process cannot host its backend."""
    engine = job.backend_entry.engine if job.backend_entry else None
    return engine.name if engine else job.backend


def _in_own_process(context: WorkerContext, job: Job) -> JobResult:
    try:
        return context.in_engine_process(helper_engine(job), in_this_process, execute_job, job)
    except BrokenProcessPool:
        return JobResult(job.name, Status.FAILED, f"the process running {job.backend} died during the run")


def _execute(job: Job, progress: Progress, cache: DataCache) -> JobResult:
    started = time.monotonic()
    outcome = JobResult(job.name, Status.SKIPPED)
    timed = PhaseTimer(outcome.phases)
    try:
        with timed("framework import"):
            backend = backends.activate(job.backend)
    except backends.BackendUnavailable as err:
        return dataclasses.replace(outcome, reason=str(err))
    reason = backend.unavailable_reason(job.device)
    if reason:
        return dataclasses.replace(outcome, reason=reason)

    try:
        with timed("data"):
            prepared, prepare_seconds = cache.prepared(job.spec.data)
            raw = cache.raw(job.spec.data.dataset)
    except DataError as err:
        return dataclasses.replace(outcome, reason=f"{DATA_UNAVAILABLE}: {err}")
    outcome.data = DataInfo(job.spec.data.dataset, raw.source, prepared.key,
                            ("train", "validation", "test") if len(prepared.y_val) else ("train", "test"),
                            prepared.preprocessing())
    outcome.data_prepare_seconds = prepare_seconds
    outcome.test_labels = prepared.y_test
    outcome.provenance = _provenance(backend, job.device)
    try:
        with timed("baseline"):
            outcome.baseline = logistic_regression_baseline(prepared)
        cores = allowed_cores()
        load = hardware.CoreLoad(cores).start()
        outcome.rss_at_start_mb = hardware.reset_peak_rss()
        sampler = SystemSampler().start()
        try:
            checkpoint = _checkpoint(job)
            while True:
                with timed("model build"):
                    model = backend.build(job.spec, job.seed, job.device)
                try:
                    with timed("backend.train"):
                        result = backend.train(model, job.spec, prepared, job.seed, job.device, progress,
                                               job.spec.train.max_steps_per_epoch,
                                               **({"checkpoint": checkpoint} if checkpoint else {}))
                    break
                except CheckpointError:
                    continue  # the model may hold part of the state: a new one, from the next readable epoch or none
                finally:
                    if checkpoint is not None:  # what went wrong with the checkpoint, said with the run's result
                        outcome.notes, outcome.out_of_space = checkpoint.notes, checkpoint.out_of_space
        finally:
            outcome.system_metrics = sampler.stop()
            outcome.other_load_cores = load.other_cores()
            outcome.peak_rss_mb = hardware.peak_rss_mb()
        if job.log_model and backend.MLFLOW_FLAVOR:
            from lenet_bench.results.tracking import model_archive

            # Keras' saver imports TensorFlow when it is installed, also for a model of another engine.
            with backends.quiet_stderr(os.environ.get("LENET_BENCH_TF_VERBOSE") != "1"), timed("model export"):
                outcome.model_archive = model_archive(backend.MLFLOW_FLAVOR, result.model,
                                                      backend.mlflow_save_options())
        outcome.result = dataclasses.replace(result, model=None)
        outcome.status = Status.COMPLETED
    except Diverged as err:
        outcome.status, outcome.reason = Status.FAILED, str(err)
    except Exception as err:  # one failed run must not stop the others; the driver records why
        outcome.status, outcome.reason = Status.FAILED, f"{type(err).__name__}: {err}"
        outcome.traceback = traceback.format_exc()
    outcome.wall_seconds = time.monotonic() - started
    return outcome


def _checkpoint(job: Job) -> Checkpoint | None:
    """train()'s checkpoint argument: the job's checkpoint folder, if it has one."""
    if job.checkpoint_dir is None:
        return None
    return Checkpoint(Path(job.checkpoint_dir))


def _provenance(backend: backends.Backend, device: Device) -> Provenance:
    cores = len(allowed_cores())
    info = backend.device_info(device)
    gpu_name = info.get("gpu_name", "")
    return Provenance(
        host=hardware.host(), cpu_model=hardware.cpu_model(), cores=cores,
        hardware=hardware.hardware_class(device, cores, gpu_name), gpu_name=gpu_name,
        gpu_driver=hardware.nvidia_driver_version() if device == Device.GPU else "",
        cuda_version=info.get("cuda_version", ""), framework_version=backend.framework_version())


def worker_setup(cores: list[int] | None, environment: dict[str, str]) -> None:
    """First thing in a worker process: its own cores, and thread pools sized to them before any framework loads;
    and it ends when the invocation that started it is gone (killed with -9)."""
    start_process(os.getppid())
    if cores and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cores)
    count = str(len(cores) if cores else len(allowed_cores()))
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[variable] = count
    os.environ.update(environment)
