"""MLflow: a thin client for the recorder (the one writer) and the readers (compare, report, predict, serve).

One experiment per spec folder, a parent run per invocation, a child run per (variant,
backend, device, seed), and a run of its own for each baseline. The default store is a
local SQLite database (MLflow 3's default); MLFLOW_TRACKING_URI wins when set.

Opening a store is checked: an HTTP server that does not answer fails within seconds with
its address, and a new SQLite store is created under a file lock, so two invocations started
at once do not both create its schema.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import mlflow
from filelock import FileLock
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from lenet_bench.disk_space import check_room
from lenet_bench.results.row import DRIVER_TAG, KIND_TAG, STATUS_TAG, Status

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
MODEL_PATH = "model"
PROBE_TIMEOUT_S = 5
_MAX_PARAMS, _MAX_METRICS = 100, 1000  # MLflow's limits per log_batch call


class TrackingError(Exception):
    """The MLflow store cannot be used; the message names its URI."""


def quiet_mlflow_logs() -> None:
    """MLflow narrates database set-up at INFO; users watch the progress instead. Its database layer also logs
    every error it raises, with the whole traceback: the error reaches lenet_bench, which says it once."""
    for chatty in ("mlflow.system_metrics", "alembic"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)


def resolve_tracking_uri(cli_value: str | None) -> str:
    return cli_value or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_path(uri: str) -> Path | None:
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': [1, {'c': 2}]}} -> {'a.b.0': 1, 'a.b.1.c': 2}."""
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, (list, tuple)) and value and any(isinstance(v, (dict, list)) for v in value):
        items = enumerate(value)
    else:
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in items:
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _probe_http(uri: str) -> None:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=PROBE_TIMEOUT_S):
            return
    except urllib.error.HTTPError:
        return  # it answered: a server is there (some put /health behind a proxy)
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise TrackingError(f"the MLflow tracking server at {uri} does not answer ({reason}); start it, or pass "
                            "--tracking-uri (e.g. sqlite:///mlflow.db)") from err


class Tracker:
    def __init__(self, tracking_uri: str, experiment: str | None = None, *, create: bool = True):
        quiet_mlflow_logs()
        self.tracking_uri = tracking_uri
        if tracking_uri.startswith(("http://", "https://")):
            _probe_http(tracking_uri)
        database = sqlite_path(tracking_uri)
        if database is not None and not create and not database.exists():
            raise TrackingError(f"no MLflow store at {tracking_uri} ({database} does not exist); pass "
                                "--tracking-uri or set MLFLOW_TRACKING_URI")
        # Two invocations on one SQLite store: one creates its schema while the other waits, and rows that
        # MLflow inserts only once per store (dataset records) are written one process at a time.
        self._lock: Any = FileLock(f"{database}.lock") if database is not None else contextlib.nullcontext()
        try:
            with self._lock:  # one process creates a new store's schema; the others wait, then open it
                if database is not None:
                    database.parent.mkdir(parents=True, exist_ok=True)
                mlflow.set_tracking_uri(tracking_uri)
                self.client = MlflowClient(tracking_uri)
                self.experiment_id = self._experiment_id(experiment, create) if experiment else ""
        except mlflow.exceptions.MlflowException as err:
            raise TrackingError(f"cannot use the MLflow store at {tracking_uri}: {err.message}") from err
        except OSError as err:
            raise TrackingError(f"cannot use the MLflow store at {tracking_uri}: {err}") from err
        self.experiment = experiment

    def _experiment_id(self, name: str, create: bool) -> str:
        existing = self.client.get_experiment_by_name(name)
        if existing is not None:
            return existing.experiment_id
        if not create:
            names = sorted(e.name for e in self.client.search_experiments())
            raise TrackingError(f"no experiment {name!r} in MLflow store {self.tracking_uri}; "
                                f"experiments there: {', '.join(map(repr, names)) or 'none'}")
        try:
            return self.client.create_experiment(name)
        except mlflow.exceptions.MlflowException:  # another process created it meanwhile
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def local_folders(self) -> list[Path]:
        """The folders on this machine that the store writes: the SQLite file's and the experiment's artifacts'."""
        folders = []
        database = sqlite_path(self.tracking_uri)
        if database is not None:
            folders.append(database.absolute().parent)
        location = self.client.get_experiment(self.experiment_id).artifact_location if self.experiment_id else ""
        if location.startswith("file:") or "://" not in location:
            folder = Path(urllib.parse.urlparse(location).path if location.startswith("file:") else location)
            if location:
                folders.append(folder.absolute())
        return list(dict.fromkeys(folders))

    def check_room(self) -> None:
        """Before any training: the store's local folders take a run's records (disk_space.OutOfSpace if not)."""
        for folder in self.local_folders():
            try:
                check_room(folder, "; free some space there, or pass --tracking-uri with a store on another disk")
            except OSError as err:
                raise TrackingError(f"cannot write the MLflow store's folder {folder} ({err.strerror or err}); "
                                    "fix its permissions or pass --tracking-uri") from err

    # ------------------------------------------------------------ reading

    def search(self, filter_string: str, experiment_ids: list[str] | None = None) -> list[mlflow.entities.Run]:
        """Every matching run, newest first (pages followed)."""
        ids = experiment_ids or [self.experiment_id]
        runs: list[mlflow.entities.Run] = []
        token = None
        while True:
            page = self.client.search_runs(ids, filter_string=filter_string, order_by=["attributes.start_time DESC"],
                                           max_results=1000, page_token=token)
            runs += list(page)
            token = page.token
            if not token:
                return runs

    def metric_history(self, run_id: str, name: str) -> list[mlflow.entities.Metric]:
        return self.client.get_metric_history(run_id, name)

    def find_run(self, run: str) -> mlflow.entities.Run:
        """A run by id, or the newest completed run with that name; LookupError if none."""
        try:
            return self.client.get_run(run)
        except mlflow.exceptions.MlflowException:
            pass
        # MLflow's filter strings cannot escape a quote: a name with one is matched with LIKE, each quote a
        # one-character wildcard, and then compared exactly here.
        awkward = re.sub(r"['\"\\%_]", "_", run)
        match = f"= '{run}'" if awkward == run else f"LIKE '{awkward}'"
        try:
            found = self.search(f"tags.`mlflow.runName` {match} and tags.`{STATUS_TAG}` = '{Status.COMPLETED.value}'",
                                [e.experiment_id for e in self.client.search_experiments()])
        except mlflow.exceptions.MlflowException as err:
            raise LookupError(f"cannot look up a run named {run!r} in {self.tracking_uri}: {err.message}") from err
        found = [r for r in found if r.info.run_name == run]
        if not found:
            raise LookupError(f"no completed run with id or name {run!r} in {self.tracking_uri}")
        return found[0]

    def download_text(self, run_id: str, artifact_file: str) -> str:
        with tempfile.TemporaryDirectory() as folder:
            path = self.client.download_artifacts(run_id, artifact_file, folder)
            return Path(path).read_text()

    def has_artifact(self, run_id: str, path: str) -> bool:
        parent = str(Path(path).parent) if "/" in path else None
        return any(a.path == path for a in self.client.list_artifacts(run_id, parent))

    def load_model(self, run_id: str, flavor: str) -> Any:
        module = importlib.import_module(f"mlflow.{flavor}")
        return module.load_model(f"runs:/{run_id}/{MODEL_PATH}")

    # ------------------------------------------------------------ writing (the recorder's)

    def start_run(self, name: str, *, parent_id: str | None = None, tags: dict[str, str] | None = None) -> str:
        all_tags = dict(tags or {})
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        return self.client.create_run(self.experiment_id, run_name=name, tags=all_tags).info.run_id

    def set_experiment_tag(self, key: str, value: str) -> None:
        self.client.set_experiment_tag(self.experiment_id, key, value)

    def delete_run(self, run_id: str) -> None:
        """A run that turned out not to happen (its device is not there): ended, and out of the UI's view."""
        self.client.set_terminated(run_id, "FINISHED")
        self.client.delete_run(run_id)

    def end_run(self, run_id: str, status: str) -> None:
        """FINISHED, FAILED or KILLED."""
        self.client.set_terminated(run_id, status)

    def log(self, run_id: str, *, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
            tags: dict[str, Any] | None = None, series: dict[str, list[tuple[int, float]]] | None = None,
            timestamped: list[tuple[int, int, dict[str, float]]] | None = None) -> None:
        """Log in batches: params, single-value metrics, per-step series {name: [(step, value)]}, and
        samples [(step, timestamp ms, {name: value})] taken elsewhere (system metrics of a worker)."""
        now = int(time.time() * 1000)
        entries: list[Metric] = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if _finite(v)]
        for name, points in (series or {}).items():
            entries += [Metric(name, float(v), now, int(step)) for step, v in points if _finite(v)]
        for step, stamp, values in timestamped or []:
            entries += [Metric(name, float(v), stamp, step) for name, v in values.items() if _finite(v)]
        param_list = [Param(k, _param_text(v)) for k, v in (params or {}).items()]
        tag_list = [RunTag(k, str(v)[:5000]) for k, v in (tags or {}).items()]
        for i in range(0, len(param_list), _MAX_PARAMS):
            self.client.log_batch(run_id, params=param_list[i:i + _MAX_PARAMS])
        for i in range(0, len(entries), _MAX_METRICS):
            self.client.log_batch(run_id, metrics=entries[i:i + _MAX_METRICS])
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
            # A dataset known by its source and digest only: MLflow's MetaDataset.
            entity = MetaDataset(LocalArtifactDatasetSource(source), name=f"{name}/{split}",
                                 digest=split_digest)._to_mlflow_entity()
            inputs.append(DatasetInput(entity, tags=[InputTag("mlflow.data.context", split)]))
        with self._lock:
            self.client.log_inputs(run_id, datasets=inputs)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self.client.log_text(run_id, text, artifact_file)

    def log_dict(self, run_id: str, value: Any, artifact_file: str) -> None:
        self.client.log_text(run_id, json.dumps(value, indent=2, default=str), artifact_file)

    def log_figure(self, run_id: str, figure: Any, artifact_file: str) -> None:
        self.client.log_figure(run_id, figure, artifact_file)

    def log_file(self, run_id: str, path: Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(run_id, str(path), artifact_path)

    def log_file_as(self, run_id: str, path: Path, artifact_file: str) -> None:
        """`path`'s content as the run's `artifact_file` (a file drawn once, logged with many runs)."""
        with tempfile.TemporaryDirectory() as folder:
            named = Path(folder) / artifact_file
            shutil.copyfile(path, named)
            self.client.log_artifact(run_id, str(named))

    def log_model_archive(self, run_id: str, archive: bytes) -> None:
        """A model saved by a worker with MLflow's flavour (tar of its folder), under the run's `model/`."""
        with tempfile.TemporaryDirectory() as folder:
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r") as tar:
                tar.extractall(folder, filter="data")
            self.client.log_artifacts(run_id, str(Path(folder) / MODEL_PATH), MODEL_PATH)

    # ------------------------------------------------------------ orphans

    def orphaned_runs(self, alive: Any) -> list[mlflow.entities.Run]:
        """RUNNING runs of this experiment whose recording process is gone (`alive(driver_tag)` is False)."""
        running = self.search(f"attributes.status = 'RUNNING' and tags.`{KIND_TAG}` != ''")
        return [run for run in running if run.data.tags.get(DRIVER_TAG) and not alive(run.data.tags[DRIVER_TAG])]


def model_archive(flavor: str, model: Any, save_options: dict[str, Any]) -> bytes:
    """The model saved with MLflow's `flavor` into a folder named `model`, as tar bytes (for a worker
    to hand back: the recorder logs it with `log_model_archive`)."""
    module = importlib.import_module(f"mlflow.{flavor}")
    # MLflow warns on every save that pickle needs trust and that no signature was given: both chosen here.
    flavor_logger = logging.getLogger(f"mlflow.{flavor}")
    level = flavor_logger.level
    flavor_logger.setLevel(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as folder:
            module.save_model(model, f"{folder}/{MODEL_PATH}", **save_options)
            buffer = io.BytesIO()
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(f"{folder}/{MODEL_PATH}", arcname=MODEL_PATH)
            return buffer.getvalue()
    finally:
        flavor_logger.setLevel(level)


def _finite(value: Any) -> bool:
    try:
        return value is not None and float(value) == float(value) and abs(float(value)) != float("inf")
    except (TypeError, ValueError):
        return False


def _param_text(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, (list, dict)) else str(value)
    return text[:6000]  # MLflow's limit on a param value
