"""`run`: train every selected run, record it in MLflow and the results folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from urllib.parse import urlsplit

from lenet_bench.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    error,
)
from lenet_bench.console import console
from lenet_bench.disk_space import is_out_of_space, out_of_space_message
from lenet_bench.engine.claims import TRAINED_ELSEWHERE
from lenet_bench.engine.driver import Driver, Interrupted
from lenet_bench.engine.plan import RunOptions, SelectionError, plan_jobs
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import ResultsError
from lenet_bench.results.tracking import TrackingError, resolve_tracking_uri, sqlite_path
from lenet_bench.results.view import view_url
from lenet_bench.spec import load_variants
from lenet_bench.stopping import stops_as_flag

DASK_SCHEMES = ("tcp", "tls", "ucx", "ws", "wss")


def cluster_address_problem(address: str) -> str | None:
    """Why `address` cannot be a Dask scheduler's, or None: checked before anything connects."""
    expected = f"expected a Dask scheduler address like tcp://HOST:PORT, received {address!r}"
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        return expected
    if parts.scheme not in DASK_SCHEMES:
        return expected + (f" (scheme {parts.scheme!r}; Dask speaks {', '.join(DASK_SCHEMES)})" if parts.scheme else "")
    if not parts.hostname or port is None or parts.path not in ("", "/"):
        return expected
    return None


def experiment_name(paths: list[str]) -> str:
    first = Path(paths[0]).resolve()
    return f"lenet_bench/{(first if first.is_dir() else first.parent).name}"


def cmd_run(args: argparse.Namespace) -> int:
    if args.cluster and (problem := cluster_address_problem(args.cluster)):
        error(f"--cluster: {problem}")
        return EXIT_INVALID
    variants = load_variants(args.paths)  # a bad spec is refused at once, before MLflow and the frameworks load
    options = RunOptions(
        data_dir=args.data_dir, tracking_uri=args.tracking_uri, results_dir=args.results,
        update_reference=args.update_reference, only=tuple(args.only), backends=tuple(args.backend),
        devices=tuple(args.device), epochs=args.epochs, max_steps=args.max_steps, subset=args.subset,
        seeds=tuple(args.seeds), force=args.force, log_models=args.log_models, workers=args.workers,
        cluster=args.cluster)
    try:
        jobs = plan_jobs(variants, options)  # the selection and the command line's overrides, checked as early
    except SelectionError as err:
        error(str(err))
        return EXIT_INVALID

    driver = Driver(options)
    try:
        with stops_as_flag():
            rows = driver.run(variants, args.experiment or experiment_name(args.paths), jobs)
    except Exception as err:
        if is_out_of_space(err):  # a full disk wherever the invocation writes: what it recorded is kept, whole
            error(f"{out_of_space_message(err, store_folders(options))}; the runs recorded before are kept")
            return EXIT_INVALID
        if isinstance(err, (SelectionError, ResultsError, TrackingError, ConnectionError)):
            error(str(err))
            return EXIT_INVALID
        raise
    except Interrupted:
        console.print("\ninterrupted: finished runs are logged and in the results folder; the runs in flight are "
                      "marked KILLED. Run the same command again to resume.")
        return EXIT_INTERRUPTED
    code = summarize(rows, len(driver.reused), options.results_dir)
    if driver.tracker is not None:
        print_mlflow_hint(driver.tracker)
    if driver.unwritten:
        error(f"{len(driver.unwritten)} run(s) could not be written to {options.results_dir}/runs.csv (see the "
              "warnings above); once the folder is writable, the same command trains them again")
        return max(code, EXIT_FAILED)
    return code


def store_folders(options) -> list[Path]:
    """The local folders an invocation writes: the results folder and a SQLite store's."""
    database = sqlite_path(resolve_tracking_uri(options.tracking_uri))
    return [Path(options.results_dir)] + ([database.absolute().parent] if database is not None else [])


def print_mlflow_hint(tracker) -> None:
    """How to look at the runs in MLflow's UI, with the view the recorder stored."""
    uri = tracker.tracking_uri
    if sqlite_path(uri) is not None:
        console.print(f"MLflow: .venv/bin/mlflow ui --backend-store-uri {uri} --port 5000, then open "
                      f"{view_url('http://127.0.0.1:5000', tracker.experiment_id)}", markup=False)
    elif uri.startswith(("http://", "https://")):
        console.print(f"MLflow: {view_url(uri, tracker.experiment_id)}", markup=False)


def summarize(rows: list[ResultRow], reused: int, results: Path) -> int:
    """The invocation's counts, and each failed run or missed expectation; the exit code."""
    completed = sum(r.status is Status.COMPLETED for r in rows)
    counts = {"trained": completed - reused, "completed before": reused,
              **{s.value: sum(r.status is s for r in rows) for s in (Status.SKIPPED, Status.FAILED)}}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; results in {results}/", markup=False)
    elsewhere = [r for r in rows if r.status is Status.SKIPPED and r.reason.startswith(TRAINED_ELSEWHERE)]
    if not completed and not elsewhere and not any(r.status is Status.FAILED for r in rows):
        skipped = [r for r in rows if r.status is Status.SKIPPED]
        error(f"nothing ran: every selected run was skipped (first: {skipped[0].run}: {skipped[0].reason})"
              if skipped else "nothing ran")
        return EXIT_INVALID
    problems = [r for r in rows if not r.ok]
    for row in problems:
        label = "failed" if row.status is Status.FAILED else "missed expectation"
        reason = row.reason or f"test accuracy {row.test_accuracy:.4f} < expected {row.min_test_accuracy}"
        error(f"{label}: {row.run}: {reason}")
    return EXIT_FAILED if problems else EXIT_OK
