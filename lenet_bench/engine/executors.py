"""Where runs execute: inline (this process), local worker processes pinned to cores, or a Dask cluster.

Every executor takes a `Job` and returns a `concurrent.futures.Future` of its `JobResult`;
`capacity` says how many jobs it runs at once, so the driver keeps exactly that many in
flight (and marks exactly those KILLED on Ctrl-C).

- inline: `execute_job` in the invoking process, one run at a time, timings as they always were.
- workers: N spawned processes (TensorFlow is not fork-safe), each pinned to its own cores
  with its frameworks' thread pools sized to them before any framework loads. A worker that
  dies fails its run with that reason; a new one takes its place for the next run.
- dask: an existing `dask.distributed` scheduler. GPU runs ask for `resources={"GPU": 1}`, so
  they go only to workers started with `--resources GPU=1`.

`cannot_run(job)` says, before anything trains, why an executor will not take a job (a GPU run on a
cluster without a GPU worker), so that the driver announces the skip with the others and counts only
the runs that will train in its estimate.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Protocol

from lenet_bench.data.cache import DataCache
from lenet_bench.device import Device, allowed_cores
from lenet_bench.engine.execute import JobResult, execute_job, worker_setup
from lenet_bench.engine.plan import Job
from lenet_bench.engine.process import HelperProcess
from lenet_bench.engine.worker_context import WorkerContext, in_this_process
from lenet_bench.results.row import Status
from lenet_bench.training.result import Progress


class Executor(Protocol):
    name: str
    capacity: int  # jobs in flight at once
    cores_per_run: int  # the cores one run gets (for the estimate of how long runs take)

    def cannot_run(self, job: Job) -> str | None: ...

    def submit(self, job: Job) -> Future[JobResult]: ...

    def shutdown(self, *, kill: bool) -> None: ...


class InlineExecutor:
    """In the invoking process, one run after another; a live progress bar on a terminal."""

    name = "inline"
    capacity = 1

    def __init__(self, progress_for: Callable[[Job], Progress] | None = None, data: DataCache | None = None):
        self._progress_for = progress_for
        self._context = WorkerContext(data)  # the invocation's data cache: what the driver loaded to decide
        self.cores_per_run = len(allowed_cores())

    def cannot_run(self, job: Job) -> str | None:
        return None  # this process: the driver asked its backend already

    def submit(self, job: Job) -> Future[JobResult]:
        future: Future[JobResult] = Future()
        progress: Progress | None = self._progress_for(job) if self._progress_for else None
        future.set_result(execute_job(self._context, job, progress))  # KeyboardInterrupt propagates to the driver
        return future

    def shutdown(self, *, kill: bool) -> None:
        self._context.close()  # a Keras engine this process could not host ran in a process of its own


def split_cores(cores: list[int], workers: int) -> list[list[int]]:
    """Contiguous groups of cores, one per worker; with more workers than cores, workers share them."""
    if workers <= len(cores):
        size, extra = divmod(len(cores), workers)
        groups, start = [], 0
        for i in range(workers):
            end = start + size + (1 if i < extra else 0)
            groups.append(cores[start:end])
            start = end
        return groups
    return [[cores[i % len(cores)]] for i in range(workers)]


class LocalWorkers:
    """N single-process pools, each pinned to its own cores; a job goes to a free one."""

    name = "workers"

    def __init__(self, workers: int, environment: dict[str, str] | None = None):
        self.capacity = workers
        self.groups = split_cores(allowed_cores(), workers)
        self.cores_per_run = len(self.groups[0])
        self._environment = environment or {}
        self._pools: list[HelperProcess | None] = [None] * workers
        self._busy: list[bool] = [False] * workers

    def cannot_run(self, job: Job) -> str | None:
        return None  # workers on this machine: what it has (its GPU, its backends) the driver asked already

    def _pool(self, slot: int) -> HelperProcess:
        pool = self._pools[slot]
        if pool is None:
            pool = HelperProcess(worker_setup, (self.groups[slot], self._environment))
            self._pools[slot] = pool
        return pool

    def submit(self, job: Job) -> Future[JobResult]:
        slot = self._busy.index(False)  # the driver never submits more than `capacity`
        self._busy[slot] = True
        inner = self._pool(slot).submit(in_this_process, execute_job, job)
        outer: Future[JobResult] = Future()

        def done(finished: Future[JobResult]) -> None:
            self._busy[slot] = False
            try:
                outer.set_result(finished.result())
            except concurrent.futures.process.BrokenProcessPool:
                self._pools[slot] = None  # a fresh process for the next job
                outer.set_result(died(job, f"worker {slot} (cores {self.groups[slot]}) died during the run"))
            except BaseException as err:
                outer.set_result(died(job, f"{type(err).__name__}: {err}"))

        inner.add_done_callback(done)
        return outer

    def shutdown(self, *, kill: bool) -> None:
        for pool in self._pools:
            if pool is not None:
                if kill:
                    pool.kill()
                else:
                    pool.shutdown()
        self._pools = [None] * self.capacity


def died(job: Job, reason: str) -> JobResult:
    return JobResult(job.name, Status.FAILED, reason)


class DaskExecutor:
    """Jobs on an existing Dask scheduler; GPU jobs only on workers that offer a GPU resource."""

    name = "dask"

    def __init__(self, address: str, connect_timeout_s: float = 10):
        from distributed import Client

        from lenet_bench.engine.dask_context import DaskWorkerContext, on_dask_worker  # distributed: Dask runs only

        try:
            self.client = Client(address, timeout=connect_timeout_s, set_as_default=False)
        except OSError as err:
            raise ConnectionError(f"cannot reach the Dask scheduler at {address} ({err}); start one with "
                                  "`dask scheduler` and workers with `dask worker ADDRESS`") from err
        self.client.register_plugin(DaskWorkerContext())  # each worker's datasets and helpers, kept across runs
        self._on_worker = on_dask_worker
        workers = self.client.scheduler_info(n_workers=-1)["workers"]
        self.capacity = max(1, sum(w.get("nthreads", 1) for w in workers.values()))
        self.cores_per_run = 1  # the README's workers: --nthreads 1, one per core group
        self.gpu_workers = sum(1 for w in workers.values() if w.get("resources", {}).get("GPU"))
        self._tasks: set[Any] = set()

    def cannot_run(self, job: Job) -> str | None:
        if job.device == Device.GPU and not self.gpu_workers:
            return "no Dask worker offers a GPU resource (start one with: dask worker ADDRESS --resources GPU=1)"
        return None

    def submit(self, job: Job) -> Future[JobResult]:
        outer: Future[JobResult] = Future()
        refused = self.cannot_run(job)
        if refused:  # the driver skips such a job before; a caller that did not gets it skipped here
            outer.set_result(JobResult(job.name, Status.SKIPPED, refused))
            return outer
        resources = {"GPU": 1} if job.device == Device.GPU else None
        task = self.client.submit(self._on_worker, execute_job, job, key=f"lenet_bench-{job.name}-{id(outer)}", pure=False,
                                  resources=resources, retries=0)

        def done(finished: Any) -> None:  # a distributed.Future, on Dask's own thread
            self._tasks.discard(finished)
            try:
                outer.set_result(finished.result())
            except BaseException as err:
                outer.set_result(died(job, f"Dask: {type(err).__name__}: {err}"))

        self._tasks.add(task)
        task.add_done_callback(done)
        return outer

    def shutdown(self, *, kill: bool) -> None:
        if kill and self._tasks:
            self.client.cancel(list(self._tasks), force=True)
        self.client.close()
