"""A results table into MLflow, one way: every completed row of runs.csv as a finished run of an experiment,
with the shared view `run` sets up, so a results folder can be browsed in MLflow's UI where its store is not
at hand (the committed reference results on a fresh clone; a store deleted or lost with its machine).

An exported run holds what the row holds (its params, metrics and tags, as the recorder logs them) and says
where it came from (EXPORTED_FROM_TAG); the per-epoch curves, models and figures that only the original
store had are not invented. A row whose run (name and fingerprint) the experiment already has is left alone, so exporting
again adds only new rows and never a second copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from lenet_bench.results import convert
from lenet_bench.results.row import FINGERPRINT_TAG, KIND_TAG, STATUS_TAG, Kind, ResultRow
from lenet_bench.results.tracking import Tracker
from lenet_bench.results.view import identity_tags, store_view

EXPORTED_FROM_TAG = "lenet_bench.exported_from"


@dataclass(frozen=True)
class Exported:
    added: int  # rows logged as new runs
    present: int  # rows the experiment had already
    without_numbers: int  # skipped, failed and killed rows: nothing to compare, not exported


def export_rows(rows: Iterable[ResultRow], tracker: Tracker, source: Path) -> Exported:
    """The completed `rows` (read from `source`) as finished runs of the tracker's experiment, and its view."""
    rows = list(rows)
    with_numbers = [row for row in rows if row.status.has_numbers]
    # A run is the same run when its name and fingerprint are (rows of old have no fingerprint: the name alone).
    present = {(run.info.run_name, run.data.tags.get(FINGERPRINT_TAG, ""))
               for run in tracker.search(f"tags.`{KIND_TAG}` = '{Kind.RUN.value}'")}
    new = [row for row in with_numbers if (row.run, row.fingerprint) not in present]
    groups = {row.identity.seed_group for row in with_numbers}
    store_view(tracker, [row.run for row in with_numbers], groups, runs=len(present) + len(new))
    for row in new:
        params, metrics, tags = convert.to_mlflow(row)
        run_id = tracker.start_run(row.run, tags={**tags, **identity_tags(row), EXPORTED_FROM_TAG: str(source),
                                                   STATUS_TAG: row.status.value})
        tracker.log(run_id, params=params, metrics=metrics)
        tracker.end_run(run_id, "FINISHED")
    return Exported(added=len(new), present=len(with_numbers) - len(new), without_numbers=len(rows) - len(with_numbers))
