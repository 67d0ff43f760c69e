"""Runs read back from MLflow as results rows, for `compare`, `report` and `predict`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import pandas as pd

from lenet_bench.results import convert
from lenet_bench.results.row import KIND_TAG, STATUS_TAG, Kind, ResultRow, Status
from lenet_bench.results.tracking import Tracker
from lenet_bench.training.result import EpochRecord

HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "epoch_eval_seconds")


class LoadedRuns(NamedTuple):
    rows: list[ResultRow]  # completed runs, the newest per run name
    baselines: pd.DataFrame  # run, dataset, test_accuracy, train_seconds, data_digest


def load_runs(tracker: Tracker) -> LoadedRuns:
    """Completed runs and baselines of the tracker's experiment.

    A run that was re-run (--force) appears once per invocation in MLflow; only the newest
    is kept per run name, as in results/runs.csv, so a seed is never counted twice.
    """
    completed = tracker.search(f"tags.`{KIND_TAG}` = '{Kind.RUN.value}' and "
                               f"tags.`{STATUS_TAG}` = '{Status.COMPLETED.value}' and attributes.status = 'FINISHED'")
    newest: dict[str, ResultRow] = {}
    for run in completed:  # newest first
        newest.setdefault(run.info.run_name, convert.from_mlflow(run))
    rows = sorted(newest.values(), key=lambda r: (r.spec, r.overrides, r.backend, r.device, r.seed))
    baselines = tracker.search(f"tags.`{KIND_TAG}` = '{Kind.BASELINE.value}' and attributes.status = 'FINISHED'")
    table = pd.DataFrame([{"run": b.info.run_name, "dataset": b.data.tags.get("dataset"),
                           "test_accuracy": b.data.metrics.get("test_accuracy"),
                           "train_seconds": b.data.metrics.get("train_seconds"),
                           "data_digest": b.data.tags.get("data_digest")} for b in baselines],
                         columns=["run", "dataset", "test_accuracy", "train_seconds", "data_digest"])
    table = table.drop_duplicates("run").sort_values("run").reset_index(drop=True)
    return LoadedRuns(rows, table)


def load_histories(tracker: Tracker, run_ids: Iterable[str]) -> dict[str, list[EpochRecord]]:
    """Per-epoch records of each run, rebuilt from its metric histories (step = epoch)."""
    histories = {}
    for run_id in run_ids:
        series = {name: {m.step: m.value for m in tracker.metric_history(run_id, name)} for name in HISTORY_METRICS}
        histories[run_id] = history_from_series(series)
    return histories


def history_from_series(series: dict[str, dict[int, float]]) -> list[EpochRecord]:
    epochs = sorted(set(series.get("train_loss", {})) | set(series.get("train_accuracy", {})))
    nan = float("nan")
    return [EpochRecord(epoch=e, train_loss=series.get("train_loss", {}).get(e, nan),
                        train_accuracy=series.get("train_accuracy", {}).get(e, nan),
                        val_loss=series.get("val_loss", {}).get(e), val_accuracy=series.get("val_accuracy", {}).get(e),
                        seconds=series.get("epoch_seconds", {}).get(e, nan), images=0,
                        eval_seconds=series.get("epoch_eval_seconds", {}).get(e, 0.0)) for e in epochs]
