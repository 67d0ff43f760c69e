"""What a pool of local workers costs: lenet_bench's pinned process slots against a Dask LocalCluster.

`--workers N` could run on Dask's LocalCluster instead of N single-process pools. This times, for
each, on the machine it runs on (keep it quiet):

- start: from nothing to N workers that have each run one job;
- dispatch: the round trip of a job that does nothing, median of many;
- runs: the wall time of a batch of real, tiny training runs (LeNet-5, 2 steps, PyTorch), as the
  driver submits them (never more in flight than workers).

    .venv/bin/python scripts/executor_overhead.py --workers 2 --data-dir ../shared/data/mnist
"""

from __future__ import annotations

import argparse
import statistics
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from lenet_bench.engine import executors
from lenet_bench.engine.execute import execute_job, worker_setup
from lenet_bench.engine.plan import RunOptions, plan_jobs
from lenet_bench.spec import load_variants

REPO = Path(__file__).resolve().parents[1]


def nothing(x: int) -> int:
    return x


def tiny_jobs(data_dir: str, count: int) -> list:
    options = RunOptions(data_dir=data_dir, only=("lenet5",), backends=("torch",), devices=("cpu",), epochs=1,
                         max_steps=2, seeds=tuple(range(count)), log_models=False)
    return plan_jobs(load_variants([REPO / "specs"]), options)


def drive(submit, jobs: list, capacity: int) -> float:
    """Seconds to run `jobs` with at most `capacity` in flight, as the driver does."""
    start = time.perf_counter()
    pending, in_flight = list(jobs), set()
    while pending or in_flight:
        while pending and len(in_flight) < capacity:
            in_flight.add(submit(pending.pop()))
        done, in_flight = wait(in_flight, return_when=FIRST_COMPLETED)
        for future in done:
            future.result()
    return time.perf_counter() - start


def measure_slots(workers: int, jobs: list, dispatches: int) -> dict[str, float]:
    pool = executors.LocalWorkers(workers)
    start = time.perf_counter()
    drive(pool.submit, jobs[:workers], workers)  # every slot starts its process and runs one job
    started = time.perf_counter() - start
    slot = pool._pool(0)
    trips = []
    for i in range(dispatches):
        t = time.perf_counter()
        slot.submit(nothing, i).result()
        trips.append(time.perf_counter() - t)
    runs = drive(pool.submit, jobs, workers)
    pool.shutdown(kill=False)
    return {"start_s": started, "dispatch_ms": 1e3 * statistics.median(trips), "runs_s": runs}


def measure_local_cluster(workers: int, jobs: list, dispatches: int) -> dict[str, float]:
    from distributed import Client, LocalCluster

    start = time.perf_counter()
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    client.run(worker_setup, None, {})

    def submit(job) -> Future:
        outer: Future = Future()
        client.submit(execute_job, job, None, pure=False).add_done_callback(lambda f: outer.set_result(f.result()))
        return outer

    drive(submit, jobs[:workers], workers)
    started = time.perf_counter() - start
    trips = []
    for i in range(dispatches):
        t = time.perf_counter()
        client.submit(nothing, i, pure=False).result()
        trips.append(time.perf_counter() - t)
    runs = drive(submit, jobs, workers)
    client.close()
    cluster.close()
    return {"start_s": started, "dispatch_ms": 1e3 * statistics.median(trips), "runs_s": runs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=int, default=8)
    parser.add_argument("--dispatches", type=int, default=50)
    parser.add_argument("--data-dir", required=True)
    args = parser.parse_args()
    jobs = tiny_jobs(args.data_dir, args.runs)
    for name, measure in (("lenet_bench slots", measure_slots), ("Dask LocalCluster", measure_local_cluster)):
        found = measure(args.workers, jobs, args.dispatches)
        print(f"{name:18s} start {found['start_s']:6.1f} s   dispatch {found['dispatch_ms']:6.2f} ms   "
              f"{len(jobs)} tiny runs {found['runs_s']:6.1f} s", flush=True)


if __name__ == "__main__":
    main()
