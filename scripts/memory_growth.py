"""How much memory a process keeps from one run to the next.

The inline executor runs every job of an invocation in one process, and each `--workers` process
runs many: whatever a finished run leaves behind in its framework (model, optimizer, compiled step,
tensors) adds up over a suite. This executes N short runs of one spec one after another in this
process, as those executors do, and prints the resident memory before each and the growth per run.
`--keep` skips the release after each run (`backend.release()`), to compare.

    .venv/bin/python scripts/memory_growth.py --backend keras --runs 6 --data-dir ../shared/data/mnist
    .venv/bin/python scripts/memory_growth.py --backend keras --runs 6 --data-dir ../shared/data/mnist --keep
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import psutil

from lenet_bench.engine import execute
from lenet_bench.engine.plan import RunOptions, plan_jobs
from lenet_bench.spec import load_variants

REPO = Path(__file__).resolve().parents[1]


def rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", default="keras")
    parser.add_argument("--spec", default="lenet5", help="a variant of specs/ (default: lenet5)")
    parser.add_argument("--runs", type=int, default=6)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per run (one epoch)")
    parser.add_argument("--data-dir")
    parser.add_argument("--keep", action="store_true", help="do not release the framework after each run")
    args = parser.parse_args()
    if args.keep:
        execute._release = lambda backend_name: None  # type: ignore[assignment]

    options = RunOptions(data_dir=args.data_dir, only=(args.spec,), backends=(args.backend,), devices=("cpu",),
                         epochs=1, max_steps=args.steps, seeds=tuple(range(args.runs)), log_models=False)
    jobs = plan_jobs(load_variants([REPO / "specs"]), options)
    before = []
    for job in jobs:
        before.append(rss_mb())
        result = execute.execute_job(job)
        print(f"{job.name}: {result.status.value}, resident before {before[-1]:,.0f} MB, "
              f"peak during {result.peak_rss_mb or 0:,.0f} MB", flush=True)
    after = rss_mb()
    # The first run loads the data and the framework; growth is counted from the second on.
    steps = [b - a for a, b in zip(before[1:], [*before[2:], after])]
    print(f"{args.backend}, release {'off' if args.keep else 'on'}: {after:,.0f} MB after {len(jobs)} runs; "
          f"from run 2 on, {statistics.median(steps):+,.0f} MB per run (median; {min(steps):+,.0f} to {max(steps):+,.0f})")


if __name__ == "__main__":
    main()
