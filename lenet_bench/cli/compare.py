"""`compare` and `report`: the completed runs of a results folder's runs.csv, compared, and the folder's reports
drawn again.

Exit codes: 0 ok; 2 no table, an unreadable one, no completed runs, or an unknown --by column.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from lenet_bench.cli.common import (
    EXIT_INVALID,
    EXIT_OK,
    error,
    specs_or_default,
)
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import console, output
from lenet_bench.disk_space import is_out_of_space, out_of_space_message
from lenet_bench.results import report
from lenet_bench.results.compare import GROUPING_COLUMNS, cells, compare_table, with_groups
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.readback import load_histories
from lenet_bench.results.stats import format_mean_ci
from lenet_bench.results.table import SUMMARY_MD, ResultsError, ResultsFolder
from lenet_bench.results.time_to_train import time_to_train_table
from lenet_bench.results.tracking import Tracker, TrackingError, resolve_tracking_uri
from lenet_bench.spec import load_variants


def _completed(folder_path: Path):
    """The completed rows of the folder's runs.csv, or None after saying why there are none."""
    try:
        return [row for row in ResultsFolder(folder_path).read_table(require=("test_accuracy",))
                if row.status.has_numbers]
    except ResultsError as err:
        error(str(err))
        return None


def cmd_compare(args: argparse.Namespace) -> int:
    rows = _completed(args.results)
    if rows is None:
        return EXIT_INVALID
    frame = with_groups(rows_to_frame(rows))
    by = [name.strip() for name in args.by.split(",") if name.strip()]
    unknown = [name for name in by if name not in frame.columns]
    if not by or unknown:
        error(f"cannot group by {', '.join(unknown) or '(nothing)'}; columns include: "
              f"{', '.join(c for c in GROUPING_COLUMNS if c in frame)}")
        return EXIT_INVALID
    table, times = compare_table(frame, by), time_to_train_table(frame)
    if args.json:  # the rows the tables are made of: means, standard deviations and interval ends over the seeds
        print_json({"results": str(args.results), "completed_runs": len(rows), "by": by, "groups": table,
                    "time_to_train": times})
        return EXIT_OK
    rich_table = Table(title=f"{args.results}/runs.csv: {len(rows)} completed run(s)",
                       caption="mean ± half-width of the 95% Student-t CI over n runs (mean alone when n = 1); "
                               "timings of different conditions are never averaged together")
    for name in by:
        rich_table.add_column(name)
    rich_table.add_column("n", justify="right")
    if "params" in table:
        rich_table.add_column("params", justify="right")
    for name in ("test accuracy %", "Δ baseline pp", "train s", "train img/s"):
        rich_table.add_column(name, justify="right")
    for _, row in table.iterrows():
        params = [f"{int(row['params']):,}" if row["params"] == row["params"] else ""] if "params" in table else []
        rich_table.add_row(*[str(row[name]) for name in by], str(row["n"]), *params, *cells(row).values())
    output.print(rich_table)
    _print_time_to_train(times)
    return EXIT_OK


def _print_time_to_train(table) -> None:
    """Time to the spec's target per setup, backend and device, as MLPerf reports it (results/time_to_train.py)."""
    if table.empty:
        return
    rich_table = Table(title="time to target (training + every evaluation until it; MLPerf: fastest and slowest "
                             "seed dropped)")
    for name in ("setup", "backend", "device", "conditions", "target", "converged", "median s", "mean s",
                 "MLPerf s"):
        rich_table.add_column(name, justify="right" if name.endswith("s") and name != "conditions" else "left")
    for _, r in table.iterrows():
        rich_table.add_row(str(r["setup"]), str(r["backend"]), str(r["device"]), str(r["conditions"]),
                           f"{r['target']:.2%}", f"{r['converged']}/{r['seeds']}", f"{r['median_s']:.1f}",
                           format_mean_ci(r["mean_s"], r["ci_low_s"], r["ci_high_s"], digits=1),
                           f"{r['mlperf_s']:.1f}" if r["mlperf_s"] == r["mlperf_s"] else "")
    output.print(rich_table)


def cmd_report(args: argparse.Namespace) -> int:
    folder = ResultsFolder(args.results, update_reference=args.update_reference)
    spec_paths = specs_or_default(args.specs)
    variants = load_variants(spec_paths) if spec_paths else None  # a SpecError is reported by main(), exit 2
    try:
        folder.require_table()  # before check_writable, which would make the folder
        folder.check_writable()
        table = folder.rewrite_summary(require=("test_accuracy",))  # the table, read once, under its lock
        rows = [row for row in table if row.status.has_numbers]
        written = [SUMMARY_MD, *report.write_comparison(table, folder.path, variants)]
        histories, note = _histories(args, rows)
        written += report.write_learning_curves(rows, histories, folder.path)
    except Exception as err:
        if is_out_of_space(err):  # runs.csv is whole (written atomically); the reports are drawn again next time
            error(out_of_space_message(err, [folder.path]))
            return EXIT_INVALID
        if isinstance(err, ResultsError):
            error(str(err))
            return EXIT_INVALID
        raise
    console.print(f"report: {len(rows)} completed run(s) of {folder.runs_csv} -> {folder.path}/: "
                  f"{', '.join(written)}{note}", markup=False)
    return EXIT_OK


def _histories(args: argparse.Namespace, rows) -> tuple[dict, str]:
    """The runs' per-epoch records from the MLflow store that logged them, and a note when it has none of them."""
    uri = resolve_tracking_uri(args.tracking_uri)
    try:
        tracker = Tracker(uri, args.experiment, create=False)
    except TrackingError as err:
        return {}, f" (no learning curves: {err})"
    histories = load_histories(tracker, [r.mlflow_run_id for r in rows if r.mlflow_run_id])
    histories = {run_id: history for run_id, history in histories.items() if history}
    if not histories:
        return {}, f" (no learning curves: experiment {args.experiment!r} of {uri} has none of these runs' epochs)"
    return histories, ""
