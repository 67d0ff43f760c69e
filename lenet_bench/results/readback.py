"""Per-epoch records read back from MLflow, where a run's curves live (runs.csv holds one row per run), for
`report`'s learning curves."""

from __future__ import annotations

from collections.abc import Iterable

from lenet_bench.results.tracking import Tracker
from lenet_bench.training.result import EpochRecord

HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds", "epoch_eval_seconds")


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
