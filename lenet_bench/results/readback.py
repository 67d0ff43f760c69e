"""A run's per-epoch records as MLflow keeps them, where its curves live (runs.csv holds one row per run): the
series the recorder logs, and the records `report`'s learning curves read back from them."""

from __future__ import annotations

from collections.abc import Iterable

from lenet_bench.results.tracking import Tracker
from lenet_bench.training.result import EpochRecord

# EpochRecord's attribute -> its curve's metric in MLflow (step = epoch): the one list of them, both ways.
EPOCH_METRICS = {"train_loss": "train_loss", "train_accuracy": "train_accuracy", "val_loss": "val_loss",
                 "val_accuracy": "val_accuracy", "seconds": "epoch_seconds", "eval_seconds": "epoch_eval_seconds"}


def history_series(history: list[EpochRecord]) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch curves for MLflow: {metric: [(epoch, value)]}."""
    series: dict[str, list[tuple[int, float]]] = {}
    for record in history:
        for attribute, metric in EPOCH_METRICS.items():
            value = getattr(record, attribute)
            if value is not None:
                series.setdefault(metric, []).append((record.epoch, value))
    return series


def load_histories(tracker: Tracker, run_ids: Iterable[str]) -> dict[str, list[EpochRecord]]:
    """Per-epoch records of each run, rebuilt from its metric histories (step = epoch)."""
    histories = {}
    for run_id in run_ids:
        series = {name: {m.step: m.value for m in tracker.metric_history(run_id, name)} for name in EPOCH_METRICS.values()}
        histories[run_id] = history_from_series(series)
    return histories


def history_from_series(series: dict[str, dict[int, float]]) -> list[EpochRecord]:
    """history_series read back ({metric: {epoch: value}}); what MLflow does not keep (images) is 0, a missing
    training value NaN, a missing validation None."""
    def value(attribute: str, epoch: int, missing: float) -> float:
        return series.get(EPOCH_METRICS[attribute], {}).get(epoch, missing)

    def optional(attribute: str, epoch: int) -> float | None:
        return series.get(EPOCH_METRICS[attribute], {}).get(epoch)

    nan = float("nan")
    epochs = sorted(set(series.get(EPOCH_METRICS["train_loss"], {})) | set(series.get(EPOCH_METRICS["train_accuracy"], {})))
    return [EpochRecord(epoch=e, train_loss=value("train_loss", e, nan), train_accuracy=value("train_accuracy", e, nan),
                        val_loss=optional("val_loss", e), val_accuracy=optional("val_accuracy", e),
                        seconds=value("seconds", e, nan), images=0, eval_seconds=value("eval_seconds", e, 0.0))
            for e in epochs]
