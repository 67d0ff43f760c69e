"""`export`: a results folder's runs.csv into an MLflow experiment, to browse it in MLflow's UI.

Exit codes: 0 exported (or nothing new to export); 2 no such results table, an unreadable one, or an
unusable store.
"""

from __future__ import annotations

import argparse

from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, error
from lenet_bench.cli.run import print_mlflow_hint
from lenet_bench.console import console
from lenet_bench.disk_space import is_out_of_space, out_of_space_message
from lenet_bench.results.export import export_rows
from lenet_bench.results.table import ResultsError, ResultsFolder
from lenet_bench.results.tracking import Tracker, TrackingError, resolve_tracking_uri, sqlite_path


def cmd_export(args: argparse.Namespace) -> int:
    folder = ResultsFolder(args.results)
    try:
        rows = folder.read_table(with_numbers=False)  # a table of skipped runs only exports nothing, and says so
    except ResultsError as err:
        error(str(err))
        return EXIT_INVALID
    uri = resolve_tracking_uri(args.tracking_uri)
    experiment = args.experiment or f"lenet_bench/{folder.path.resolve().name}"
    try:
        tracker = Tracker(uri, experiment)
        tracker.check_room()
        exported = export_rows(rows, tracker, folder.runs_csv)
    except TrackingError as err:
        error(str(err))
        return EXIT_INVALID
    except OSError as err:
        if not is_out_of_space(err):
            raise
        database = sqlite_path(uri)
        error(out_of_space_message(err, [database.absolute().parent] if database else []))
        return EXIT_INVALID
    console.print(f"export: {exported.added} run(s) of {folder.runs_csv} logged to MLflow {uri} experiment "
                  f"{experiment!r}; {exported.present} already there; {exported.without_numbers} without numbers "
                  "(skipped, failed or stopped) left out. Curves, models and figures stay in the store that "
                  "trained them.", markup=False)
    print_mlflow_hint(tracker)
    return EXIT_OK
