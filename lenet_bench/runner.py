"""specs x backends x devices x seeds -> trained, evaluated, compared and logged runs.

The runner is the only code that talks to MLflow (through `tracking`) and writes
`results/` (through `report`). Backends hand back plain data.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import platform
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

import lenet_bench
from lenet_bench import backends, compare, data, report, tracking
from lenet_bench.baseline import BaselineResult, logistic_regression_baseline
from lenet_bench.console import RunProgress, console
from lenet_bench.plan import Job, RunOptions, plan_jobs
from lenet_bench.spec import Spec, Variant
from lenet_bench.training import RunResult, time_to_target

if TYPE_CHECKING:
    import mlflow.entities

DATA_UNAVAILABLE = "data unavailable"
# Files whose change alters a trained result; the hash of their code is the "code version" of a run.
_RESULT_CODE = ("data.py", "init.py", "training.py", "backends/{backend}_backend.py")


@dataclass
class Outcome:
    job: Job
    status: str  # completed | cached | skipped | failed | killed
    row: dict[str, Any] = field(default_factory=dict)
    reason: str = ""

    @property
    def ok(self) -> bool:
        """Not failed, not killed, and (when it trained) at or above its spec's expectation."""
        return self.status in ("completed", "cached", "skipped") and self.row.get("met_expectation") is not False


def code_without_prose(source: str) -> str:
    """The program in `source`, without comments, docstrings or layout.

    What a run's code version hashes: rewording a comment or re-wrapping a line must not
    make every recorded run look stale and retrain hours of work.
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)  # no line numbers: attributes are left out by default


@functools.lru_cache(maxsize=None)  # the code does not change during an invocation
def code_version(backend: str) -> str:
    root = Path(lenet_bench.__file__).parent
    digest = hashlib.sha256(lenet_bench.__version__.encode())
    for name in _RESULT_CODE:
        path = root / name.format(backend=backend)
        if path.exists():
            digest.update(code_without_prose(path.read_text()).encode())
    return f"{lenet_bench.__version__}+{digest.hexdigest()[:10]}"


# Spec fields that do not change what a run trains: its siblings' seeds (`--seed 0` must match
# seed 0 of a full run), the expectation (checked against the current spec), and prose.
_NOT_FINGERPRINTED = ("description", "expect", "reference")


def fingerprint(job: Job, data_digest: str) -> str:
    """What makes two runs the same run: the spec as trained, backend, device, seed, code and data."""
    spec = {k: v for k, v in job.spec.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED}
    spec["train"] = {k: v for k, v in spec["train"].items() if k != "seeds"}
    payload = {
        "spec": spec, "backend": job.backend, "device": job.device,
        "seed": job.seed, "code": code_version(job.backend), "data": data_digest,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]


class DataCache:
    """Load each dataset once and prepare each preprocessing once per invocation."""

    def __init__(self, data_dir: str | None):
        self._loader = data.DatasetLoader(data_dir)
        self._prepared: dict[tuple, tuple[data.PreparedData, float]] = {}
        self._baselines: dict[str, BaselineResult] = {}

    def raw(self, dataset: str) -> data.RawDataset:
        return self._loader.load(dataset)

    def prepared(self, spec: Spec) -> tuple[data.PreparedData, float]:
        """Prepared data and the seconds its loading and preprocessing took (first use only)."""
        d = spec.data
        key = (d.dataset, d.input_size, d.normalization, d.validation_split, d.subset, d.test_subset)
        if key not in self._prepared:
            start = time.perf_counter()
            prepared = data.prepare(self.raw(d.dataset), input_size=d.input_size, normalization=d.normalization,
                                    validation_split=d.validation_split, subset=d.subset, test_subset=d.test_subset)
            self._prepared[key] = (prepared, time.perf_counter() - start)
        return self._prepared[key]

    def baseline(self, prepared: data.PreparedData) -> BaselineResult:
        if prepared.key not in self._baselines:
            self._baselines[prepared.key] = logistic_regression_baseline(prepared)
        return self._baselines[prepared.key]


def result_metrics(job: Job, result: RunResult, baseline: BaselineResult) -> dict[str, float]:
    summary = job.spec.summary()
    metrics: dict[str, float] = {
        "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
        "baseline_accuracy": baseline.test_accuracy,
        "delta_to_baseline": result.test_accuracy - baseline.test_accuracy,
        "params": summary.params, "flops": summary.flops, "train_flops": summary.train_flops,
        "epochs": len(result.history),
        "train_seconds": sum(r.seconds for r in result.history),
        "warmup_seconds": result.warmup_seconds, "steady_seconds": result.steady_seconds,
        "train_images_per_sec": result.train_images_per_second,
        "achieved_gflops": result.train_images_per_second * summary.train_flops / 1e9,
        "data_seconds": result.data_seconds, "eval_seconds": result.eval_seconds,
        "final_train_accuracy": result.history[-1].train_accuracy,
        **result.timings,
    }
    if result.history[-1].val_accuracy is not None:
        metrics["final_val_accuracy"] = result.history[-1].val_accuracy
    target = job.spec.train.target_accuracy
    reached = time_to_target(result.history, target) if target else None
    if reached:
        metrics["time_to_target_s"], metrics["epochs_to_target"] = reached
    return metrics


# Per-epoch metric series: MLflow keeps them as curves; a results row has the run's totals instead.
_SERIES = {"train_loss": "train_loss", "train_accuracy": "train_accuracy", "val_loss": "val_loss",
           "val_accuracy": "val_accuracy", "seconds": "epoch_seconds"}  # EpochRecord field -> metric


def history_series(result: RunResult) -> dict[str, list[tuple[int, float]]]:
    series: dict[str, list[tuple[int, float]]] = {}
    for record in result.history:
        for field_name, metric in _SERIES.items():
            value = getattr(record, field_name)
            if value is not None:
                series.setdefault(metric, []).append((record.epoch, value))
    return series


def recorded_row_fields(run: mlflow.entities.Run) -> dict[str, Any]:
    """What a completed MLflow run gives a results row: its result metrics and framework version.

    Not its curves' last points, nor MLflow's system metrics: a row read back from MLflow must
    look like the row written when the run finished.
    """
    metrics = {name: value for name, value in run.data.metrics.items()
               if name not in _SERIES.values() and not name.startswith("system/")}
    return {**metrics, "framework_version": run.data.tags.get("framework_version")}


def meets_expectation(job: Job, test_accuracy: float) -> bool:
    """Judged against the spec as it is now, also for a run recorded earlier."""
    return test_accuracy >= job.spec.expect.min_test_accuracy


def base_row(job: Job) -> dict[str, Any]:
    spec = job.spec
    summary = spec.summary()
    return {
        "run": job.name, "spec": job.variant.name, "base_spec": job.variant.base_name,
        "backend": job.backend, "device": job.device, "seed": job.seed, **spec.axes(),
        "params": summary.params, "flops": summary.flops, "epochs": spec.train.epochs,
        "min_test_accuracy": spec.expect.min_test_accuracy,
        "reference_accuracy": spec.reference.test_accuracy if spec.reference else None,
    }


def job_params(job: Job) -> dict[str, Any]:
    """The resolved spec flattened, plus the comparison axes under the same names in every run."""
    params = tracking.flatten(job.spec.model_dump(mode="json"))
    params.update(job.spec.axes())
    params.update(backend=job.backend, device=job.device, seed=job.seed, variant=job.variant.name)
    return params


def environment_tags(job: Job, version: str) -> dict[str, str]:
    return {
        "backend": job.backend, "device": job.device, "seed": str(job.seed), "variant": job.variant.name,
        **job.spec.axes(), "framework_version": version, "lenet_bench_version": lenet_bench.__version__,
        "host": socket.gethostname(), "python": platform.python_version(), "platform": platform.platform(),
        "spec_file": str(job.variant.file),
    }


class Runner:
    def __init__(self, options: RunOptions):
        self.options = options
        self.data = DataCache(options.data_dir)
        self._recorded: dict[str, dict[str, Any]] = {}  # fingerprint -> completed row of results/runs.csv

    def run(self, variants: list[Variant], experiment: str) -> list[Outcome]:
        jobs = plan_jobs(variants, self.options)
        self._recorded = report.completed_runs(self.options.results_dir)
        tracker = tracking.Tracker(tracking.resolve_tracking_uri(self.options.tracking_uri), experiment)
        outcomes: list[Outcome] = []
        console.print(f"lenet_bench: {len(jobs)} run(s), MLflow {tracker.tracking_uri} experiment {experiment!r}")
        invocation = f"invocation-{time.strftime('%Y%m%d-%H%M%S')}"
        try:
            with tracker.run(invocation, tags={tracking.KIND_TAG: "invocation"}) as parent_id:
                tracker.log(parent_id, params={"paths": [str(v.file) for v in variants][:50], "runs": len(jobs)})
                logged_baselines: set[str] = set()
                for index, job in enumerate(jobs, 1):
                    console.print(f"[{index}/{len(jobs)}] {job.name}")
                    try:
                        outcome = self._run_job(job, tracker, parent_id, logged_baselines)
                    except _Interrupted as stop:
                        outcomes.append(stop.outcome)
                        raise
                    outcomes.append(outcome)
                    console.print(f"  -> {outcome.status}" + (f": {outcome.reason}" if outcome.reason else ""), markup=False)
                    # runs.csv after every run: a long suite killed outright still leaves what it finished.
                    report.update_results([outcome.row], self.options.results_dir)
                tracker.log(parent_id, metrics={
                    f"runs_{status}": sum(o.status == status for o in outcomes)
                    for status in ("completed", "cached", "skipped", "failed")})
                self._log_comparison(tracker, parent_id, outcomes)
        finally:
            # Results of finished runs are written even when a later run is interrupted.
            if outcomes:
                merged = report.update_results([o.row for o in outcomes], self.options.results_dir)
                compare.write_comparison(merged, self.options.results_dir)
        return outcomes

    def _run_job(self, job: Job, tracker: tracking.Tracker, parent_id: str, logged_baselines: set[str]) -> Outcome:
        row = base_row(job)
        reason = backends.unavailable_reason(job.backend, job.device)
        if reason:
            return self._skip(job, row, reason, tracker, parent_id)
        try:
            prepared, data_seconds = self.data.prepared(job.spec)
        except data.DataError as err:
            return self._skip(job, row, f"{DATA_UNAVAILABLE}: {err}", tracker, parent_id)
        run_fingerprint = fingerprint(job, prepared.key)
        row["fingerprint"] = run_fingerprint
        if not self.options.force:
            previous = tracker.find_completed(run_fingerprint)
            if previous is not None:
                row.update(recorded_row_fields(previous), status="cached", mlflow_run_id=previous.info.run_id,
                           met_expectation=meets_expectation(job, previous.data.metrics.get("test_accuracy", 0)))
                return Outcome(job, "cached", row, "completed before with the same spec, code and data (--force reruns)")
            if run_fingerprint in self._recorded:
                # A fresh checkout or another MLflow store: results/runs.csv still says this exact run was done.
                recorded = {**self._recorded[run_fingerprint], **row, "status": "cached"}  # the spec's current expectation
                recorded["met_expectation"] = meets_expectation(job, recorded["test_accuracy"])
                return Outcome(job, "cached", recorded,
                               "completed before with the same spec, code and data, recorded in "
                               f"{self.options.results_dir / report.RUNS_CSV} but not in this MLflow store "
                               "(--force reruns)")

        baseline = self.data.baseline(prepared)
        if prepared.key not in logged_baselines:
            self._log_baseline(tracker, parent_id, job, baseline)
            logged_baselines.add(prepared.key)

        backend = backends.get(job.backend)
        version = backend.framework_version()
        tags = {tracking.KIND_TAG: "run", tracking.FINGERPRINT_TAG: run_fingerprint,
                "code_version": code_version(job.backend), "data_digest": prepared.key, **environment_tags(job, version)}
        progress = RunProgress(job.name, job.spec.train.epochs, live=self.options.live)
        try:
            with tracker.run(job.name, parent_id=parent_id, tags=tags, system_metrics=True) as run_id:
                tracker.log(run_id, params=job_params(job))
                raw = self.data.raw(job.spec.data.dataset)
                splits = ("train", "validation", "test") if len(prepared.y_val) else ("train", "test")
                tracker.log_dataset(run_id, job.spec.data.dataset, prepared.key, raw.source, splits)
                tracker.log_text(run_id, yaml.safe_dump(job.spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
                tracker.log_text(run_id, job.spec.summary().table(), "model_summary.txt")
                model = backend.build(job.spec, job.seed, job.device)
                result = backend.train(model, job.spec, prepared, job.seed, job.device, progress,
                                       job.spec.train.max_steps_per_epoch)
                metrics = result_metrics(job, result, baseline)
                metrics["data_prepare_seconds"] = data_seconds
                met = meets_expectation(job, result.test_accuracy)
                tracker.log(run_id, metrics=metrics, series=history_series(result),
                            tags={tracking.STATUS_TAG: "completed", "met_expectation": str(met)})
                self._log_evaluation(tracker, run_id, prepared, result, job.name)
                if self.options.log_models and backend.MLFLOW_FLAVOR:
                    tracker.log_model(run_id, backend.MLFLOW_FLAVOR, result.model, backend.mlflow_save_options())
        except KeyboardInterrupt:
            progress.close()
            row.update(status="killed", reason="interrupted (Ctrl-C)")
            raise _Interrupted(Outcome(job, "killed", row, "interrupted"))
        except Exception as err:  # one failed run must not stop the matrix
            progress.close()
            console.print(traceback.format_exc(), markup=False)
            row.update(status="failed", reason=f"{type(err).__name__}: {err}")
            return Outcome(job, "failed", row, row["reason"])
        row.update(metrics, status="completed", mlflow_run_id=run_id, met_expectation=met,
                   framework_version=version)
        reason = "" if met else f"test accuracy {result.test_accuracy:.4f} < expected {job.spec.expect.min_test_accuracy}"
        return Outcome(job, "completed", row, reason)

    @staticmethod
    def _log_evaluation(tracker: tracking.Tracker, run_id: str, prepared: data.PreparedData, result: RunResult,
                        title: str = "") -> None:
        """Per-class precision/recall/F1, the confusion matrix, and how inputs were prepared."""
        from sklearn.metrics import classification_report, confusion_matrix

        y_true, y_pred = prepared.y_test, result.test_predictions
        tracker.log_text(run_id, classification_report(y_true, y_pred, digits=4, zero_division=0), "classification_report.txt")
        tracker.log_dict(run_id, classification_report(y_true, y_pred, output_dict=True, zero_division=0), "classification_report.json")
        matrix = confusion_matrix(y_true, y_pred).tolist()
        tracker.log_dict(run_id, {"confusion_matrix": matrix}, "confusion_matrix.json")
        for name, figure in compare.run_figures(result.history, matrix, title).items():
            tracker.log_figure(run_id, figure, name)
        tracker.log_dict(run_id, prepared.preprocessing(), "preprocessing.json")

    @staticmethod
    def _log_comparison(tracker: tracking.Tracker, parent_id: str, outcomes: list[Outcome]) -> None:
        """On the invocation's run: comparison figures, mean/CI per (spec, backend, device), and the table."""
        rows = pd.DataFrame([o.row for o in outcomes])
        for name, figure in compare.invocation_figures(rows).items():
            tracker.log_figure(parent_id, figure, name)
        tracker.log(parent_id, metrics=compare.aggregate_metrics(rows))
        tracker.log_text(parent_id, compare.compare_markdown(compare.compare_table(rows)), "compare.md")

    def _skip(self, job: Job, row: dict, reason: str, tracker: tracking.Tracker, parent_id: str) -> Outcome:
        """Record a run that cannot happen here, with its reason, in MLflow and results/."""
        row.update(status="skipped", reason=reason)
        tags = {tracking.KIND_TAG: "run", tracking.STATUS_TAG: "skipped", "skip_reason": reason[:5000],
                "backend": job.backend, "device": job.device, "seed": str(job.seed), **job.spec.axes()}
        with tracker.run(job.name, parent_id=parent_id, tags=tags):
            pass
        return Outcome(job, "skipped", row, reason)

    def _log_baseline(self, tracker: tracking.Tracker, parent_id: str, job: Job, baseline: BaselineResult) -> None:
        d = job.spec.data
        name = f"baseline/logreg/{d.dataset}-{d.input_size}-{d.normalization}"
        with tracker.run(name, parent_id=parent_id, tags={tracking.KIND_TAG: "baseline", "backend": "sklearn",
                                                           "architecture": "logistic_regression",
                                                           "dataset": d.dataset, "data_digest": baseline.key}) as run_id:
            tracker.log(run_id, params={"description": baseline.description, "n_train": baseline.n_train,
                                        **{f"data.{k}": v for k, v in d.model_dump().items()}},
                        metrics={"test_accuracy": baseline.test_accuracy, "train_seconds": baseline.train_seconds})


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C, carrying the interrupted run's outcome up to the caller."""

    def __init__(self, outcome: Outcome):
        super().__init__()
        self.outcome = outcome
