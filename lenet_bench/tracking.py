"""MLflow: the one place that logs.

One experiment per spec folder, a parent run per invocation, a child run per
(variant, backend, device, seed), and a run of its own for each baseline. The default
store is a local SQLite database (MLflow 3's default); MLFLOW_TRACKING_URI wins when set.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

# MLflow narrates database set-up and system-metric sampling at INFO; users watch the progress instead.
for _chatty in ("mlflow.store.db.utils", "mlflow.system_metrics", "alembic"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
FINGERPRINT_TAG = "lenet_bench.fingerprint"
STATUS_TAG = "lenet_bench.status"
KIND_TAG = "lenet_bench.kind"  # invocation | run | baseline
MODEL_PATH = "model"
SYSTEM_METRICS_INTERVAL_S = 5  # often enough for epoch-long runs, too rare to disturb the timings


def resolve_tracking_uri(cli_value: str | None) -> str:
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': [1, {'c': 2}]}} -> {'a.b.0': 1, 'a.b.1.c': 2}."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, (list, tuple)) and value and any(isinstance(v, (dict, list)) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str | None = None):
        self.tracking_uri = tracking_uri
        mlflow.set_tracking_uri(tracking_uri)
        self.client = MlflowClient(tracking_uri)
        if experiment is None:  # reading only
            return
        existing = self.client.get_experiment_by_name(experiment)
        self.experiment_id = existing.experiment_id if existing else self.client.create_experiment(experiment)
        self.experiment = experiment

    # ------------------------------------------------------------ reading

    def find_completed(self, fingerprint: str) -> mlflow.entities.Run | None:
        """The newest finished run with this fingerprint (same spec, code and data), if any."""
        runs = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{FINGERPRINT_TAG}` = '{fingerprint}' and attributes.status = 'FINISHED' "
                          f"and tags.`{STATUS_TAG}` = 'completed'",
            order_by=["attributes.start_time DESC"], max_results=1,
        )
        return runs[0] if runs else None

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def run(self, name: str, *, parent_id: str | None = None, tags: dict[str, str] | None = None,
            system_metrics: bool = False) -> Iterator[str]:
        """A run that ends FINISHED, FAILED on an error, or KILLED on Ctrl-C.

        With system_metrics, MLflow samples CPU, memory (and GPU where there is one) into
        the run's `system/` metrics while it is open.
        """
        all_tags = dict(tags or {})
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(self.experiment_id, run_name=name, tags=all_tags)
        run_id = run.info.run_id
        monitor = _start_system_metrics(run_id, self.tracking_uri) if system_metrics else None
        try:
            yield run_id
        except KeyboardInterrupt:
            self.client.set_terminated(run_id, "KILLED")
            raise
        except BaseException:
            self.client.set_terminated(run_id, "FAILED")
            raise
        finally:
            if monitor is not None:
                monitor.finish()
        self.client.set_terminated(run_id, "FINISHED")

    def log(self, run_id: str, *, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
            tags: dict[str, Any] | None = None, series: dict[str, list[tuple[int, float]]] | None = None) -> None:
        """Log in batches: params, single-value metrics, and per-step series {name: [(step, value)]}."""
        now = int(time.time() * 1000)
        entries: list[Metric] = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _finite(v)]
        for name, points in (series or {}).items():
            entries += [Metric(name, float(v), now, int(step)) for step, v in points if _finite(v)]
        param_list = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        # MLflow caps one batch at 100 params and 1000 metrics.
        for i in range(0, len(param_list), 100):
            self.client.log_batch(run_id, params=param_list[i:i + 100])
        for i in range(0, len(entries), 1000):
            self.client.log_batch(run_id, metrics=entries[i:i + 1000])
        if tag_list:
            self.client.log_batch(run_id, tags=tag_list)

    def log_dataset(self, run_id: str, name: str, digest: str, source: str, splits: tuple[str, ...]) -> None:
        """The data a run used, one MLflow dataset input per split (shown in the UI's Datasets column).

        MLflow keeps one input per (name, digest), so each split is a dataset of its own.
        """
        from mlflow.data.meta_dataset import MetaDataset
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import DatasetInput, InputTag

        inputs = []
        for split in splits:
            split_digest = hashlib.sha256(f"{digest}/{split}".encode()).hexdigest()[:16]
            entity = MetaDataset(LocalArtifactDatasetSource(source), name=f"{name}/{split}",
                                 digest=split_digest)._to_mlflow_entity()
            inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", split)]))
        self.client.log_inputs(run_id, datasets=inputs)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, value: dict, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(value, indent=2, default=str), artifact_file)

    def log_figure(self, run_id: str, figure, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_model(self, run_id: str, flavor: str, model, save_options: dict) -> None:
        """Save with MLflow's own flavour under the run's `model/`, loadable as runs:/<id>/model.

        Backends pass explicit pip requirements, which skips MLflow's requirement inference
        (it re-imports the framework in a subprocess and costs seconds per run).
        """
        module = importlib.import_module(f"mlflow.{flavor}")
        with tempfile.TemporaryDirectory() as folder:
            module.save_model(model, f"{folder}/model", **save_options)
            self.client.log_artifacts(run_id, f"{folder}/model", MODEL_PATH)

    def find_run(self, run: str) -> mlflow.entities.Run:
        """A run by id, or the newest completed run with that name; LookupError if none."""
        try:
            return self.client.get_run(run)
        except mlflow.exceptions.MlflowException:
            pass
        found = self.client.search_runs(
            [e.experiment_id for e in self.client.search_experiments()],
            filter_string=f"tags.`mlflow.runName` = '{run}' and tags.`{STATUS_TAG}` = 'completed'",
            order_by=["attributes.start_time DESC"], max_results=1)
        if not found:
            raise LookupError(f"no completed run with id or name {run!r} in {self.tracking_uri}")
        return found[0]

    def download_text(self, run_id: str, artifact_file: str) -> str:
        with tempfile.TemporaryDirectory() as folder:
            path = self.client.download_artifacts(run_id, artifact_file, folder)
            return Path(path).read_text()

    def load_model(self, run_id: str, flavor: str):
        module = importlib.import_module(f"mlflow.{flavor}")
        return module.load_model(f"runs:/{run_id}/{MODEL_PATH}")


def _start_system_metrics(run_id: str, tracking_uri: str):
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, sampling_interval=SYSTEM_METRICS_INTERVAL_S, tracking_uri=tracking_uri)
    monitor.start()
    return monitor


def _finite(value: Any) -> bool:
    try:
        return value is not None and float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]  # MLflow's limit on a param value
