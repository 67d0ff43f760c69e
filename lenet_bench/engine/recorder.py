"""The recorder: the one place that writes MLflow and a results folder.

The driver hands it each job's plain `JobResult`; it turns it into a `ResultRow`, logs the
run (params, metrics, curves, system metrics, artifacts, the model) and merges the row into
`runs.csv`. A run is tagged completed only after its model and figures are logged, so a run
cut short there never looks complete. Skipped cells are recorded on the invocation's run,
not as empty runs of their own.
"""

from __future__ import annotations

import datetime
import os
import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import yaml
from sklearn.metrics import classification_report, confusion_matrix

from lenet_bench.disk_space import OutOfSpace, is_out_of_space, short_of_space
from lenet_bench.results import compare, convert, figures
from lenet_bench.results.diagrams import DiagramFolder
from lenet_bench.results.row import (
    DRIVER_TAG,
    KIND_TAG,
    STATUS_TAG,
    Kind,
    ResultRow,
    Status,
    setup_name,
    timing_condition,
)
from lenet_bench.results.table import ResultsError, ResultsFolder
from lenet_bench.results.tracking import Tracker, flatten
from lenet_bench.results.view import SEED_GROUP_TAG, identity_tags, seed_group, store_view
from lenet_bench.training.loop import time_to_target

ARCHITECTURES = "architectures"  # in a results folder: one diagram per layer description
RESUMED_TAG = "lenet_bench.resumed_from_epoch"  # a run trained on from its checkpoint of that epoch
# Accuracies as a person reads them, rounded where they are logged (MLflow and runs.csv alike): a backend's
# float32 accuracy of 9,891 hits in 10,000 is 0.98909998, 98.9099979 as a percentage. float32 holds about 7
# significant digits: past the 6th decimal of a fraction (the 4th of a percentage) is its noise, not the count.
FRACTION_DECIMALS, POINTS_DECIMALS = 6, 4

if TYPE_CHECKING:

    from lenet_bench.engine.baseline import BaselineResult
    from lenet_bench.engine.execute import JobResult
    from lenet_bench.engine.plan import Job
    from lenet_bench.training.result import EpochRecord, RunResult


# ------------------------------------------------------------------ rows

def job_row(job: Job) -> ResultRow:
    """What a run is, before anything about how it went."""
    spec = job.spec
    summary = spec.summary()
    return ResultRow(
        run=job.name, spec=job.variant.name, base_spec=job.variant.base_name, overrides=job.overrides_label,
        backend=job.backend, device=job.device.value, seed=job.seed,
        params=summary.params, flops=summary.flops, train_flops=summary.train_flops, epochs=spec.train.epochs,
        batch_size=spec.train.batch_size,
        # A run that the command line changed is not the spec's run: its expectation does not apply.
        min_test_accuracy=None if job.overrides else spec.expect.min_test_accuracy,
        reference_accuracy=spec.reference.test_accuracy if spec.reference else None,
        reference_notes=(spec.reference.notes or "") if spec.reference else "",
        target_accuracy=spec.train.target_accuracy,
    ).update(**spec.axes())


def judged(row: ResultRow) -> ResultRow:
    """met_expectation against the row's expectation (none for runs with overrides)."""
    if row.status is not Status.COMPLETED or row.test_accuracy is None or row.min_test_accuracy is None:
        return row.update(met_expectation=None)
    return row.update(met_expectation=row.test_accuracy >= row.min_test_accuracy)


def result_fields(job: Job, result: RunResult, baseline: BaselineResult | None) -> dict[str, object]:
    """The numbers of a completed run, as ResultRow fields."""
    summary = job.spec.summary()
    accuracy = fraction(result.test_accuracy)
    base = fraction(baseline.test_accuracy) if baseline else None
    fields: dict[str, object] = {
        "test_accuracy": accuracy, "test_accuracy_pct": points(accuracy), "test_error_pct": points(1 - accuracy),
        "test_loss": result.test_loss, "baseline_accuracy": base,
        "delta_to_baseline": fraction(accuracy - base) if base is not None else None,
        "gap_to_baseline_pp": points(accuracy - base) if base is not None else None,
        "epochs": len(result.history),
        "train_seconds": sum(r.seconds for r in result.history),
        "warmup_seconds": result.warmup_seconds, "steady_seconds": result.steady_seconds,
        "train_images_per_sec": result.train_images_per_second,
        "achieved_gflops": result.train_images_per_second * summary.train_flops / 1e9,
        "data_seconds": result.data_seconds, "eval_seconds": result.eval_seconds,
        "final_train_accuracy": fraction(result.history[-1].train_accuracy),
        "final_val_accuracy": None if (last := result.history[-1].val_accuracy) is None else fraction(last),
        "framework_version": result.framework_version,
    }
    if result.resumed_from_epoch:
        # Its timings span two processes: the epochs before the stop count, and the warm-up was paid twice.
        fields["reason"] = f"resumed after epoch {result.resumed_from_epoch} (interrupted before)"
    for name in ("inference_images_per_sec", "latency_p50_ms", "latency_p95_ms", "peak_gpu_mb"):
        if name in result.timings:
            fields[name] = result.timings[name]
    if "inference_batch" in result.timings:
        fields["inference_batch"] = int(result.timings["inference_batch"])
    target = job.spec.train.target_accuracy
    reached = time_to_target(result.history, target) if target else None
    if reached:
        fields["time_to_target_s"], fields["epochs_to_target"] = reached
    return fields


def fraction(value: float) -> float:
    """An accuracy (0-1) as logged: rounded to FRACTION_DECIMALS."""
    return round(float(value), FRACTION_DECIMALS)


def points(value: float) -> float:
    """An accuracy or a difference of two (0-1) in percentage points, as logged: 98.91, not 98.9099979."""
    return round(100 * float(value), POINTS_DECIMALS)


def history_series(history: list[EpochRecord]) -> dict[str, list[tuple[int, float]]]:
    """Per-epoch curves for MLflow: {metric: [(epoch, value)]}."""
    names = {"train_loss": "train_loss", "train_accuracy": "train_accuracy", "val_loss": "val_loss",
             "val_accuracy": "val_accuracy", "seconds": "epoch_seconds", "eval_seconds": "epoch_eval_seconds"}
    series: dict[str, list[tuple[int, float]]] = {}
    for record in history:
        for attribute, metric in names.items():
            value = getattr(record, attribute)
            if value is not None:
                series.setdefault(metric, []).append((record.epoch, value))
    return series


# ------------------------------------------------------------------ the recorder

def driver_id() -> str:
    """host:pid:start of this process: lets a later invocation tell whether a RUNNING run's recorder is gone."""
    return f"{socket.gethostname()}:{os.getpid()}:{psutil.Process().create_time():.0f}"


def driver_alive(tag: str) -> bool:
    """False only when the process is known to be gone: on this host, no process with that pid and start."""
    try:
        host, pid, started = tag.rsplit(":", 2)
        if host != socket.gethostname():
            return True  # another machine's: nothing here can tell
        process = psutil.Process(int(pid))
        return f"{process.create_time():.0f}" == started
    except (ValueError, psutil.NoSuchProcess, psutil.AccessDenied):
        return False


class Recorder:
    def __init__(self, tracker: Tracker, results: ResultsFolder, *, executor: str, concurrent_workers: int,
                 warn: Callable[[str], None] = print):
        self.tracker = tracker
        self.results = results
        self.executor = executor
        self.concurrent_workers = concurrent_workers
        self.warn = warn
        self.invocation_id = ""
        self._driver = driver_id()
        self._logged_baselines: set[str] = set()
        self._unwritten: list[str] = []
        self._diagrams: DiagramFolder | None = None  # made on first use: it imports matplotlib

    # ------------------------------------------------------------ invocation

    def mark_orphans(self) -> list[str]:
        """Runs left RUNNING by an invocation that was killed outright (kill -9): marked KILLED now."""
        names = []
        for run in self.tracker.orphaned_runs(driver_alive):
            self.tracker.log(run.info.run_id, tags={STATUS_TAG: Status.KILLED.value,
                                                     "reason": "its invocation was killed (found RUNNING by a later one)"})
            self.tracker.end_run(run.info.run_id, "KILLED")
            names.append(run.info.run_name)
        return names

    def start_invocation(self, name: str, params: dict[str, object], jobs: Sequence[Job] = ()) -> None:
        """The invocation's run; first the experiment's view: its name column wide enough for the runs of `jobs`
        (this invocation's) and never narrower than before, every group of runs (the store's and the jobs')
        folded, and the runs that predate the grouping given their group."""
        runs = self.label_seed_groups()
        groups = set(runs) | {seed_group(job.setup, job.backend, job.device.value) for job in jobs}
        store_view(self.tracker, [job.name for job in jobs], groups, runs=len(runs) + len(jobs))
        self.invocation_id = self.tracker.start_run(name, tags={KIND_TAG: Kind.INVOCATION.value,
                                                                DRIVER_TAG: self._driver})
        self.tracker.log(self.invocation_id, params=params)

    def label_seed_groups(self) -> list[str]:
        """The group of each of the experiment's runs; runs recorded before the view grouped them (no SEED_GROUP_TAG)
        get theirs from the tags they have, so that the view puts them with their seeds instead of all in one
        group of runs without the tag."""
        groups = []
        for run in self.tracker.search(f"tags.`{KIND_TAG}` = '{Kind.RUN.value}'"):
            tags = run.data.tags
            group = tags.get(SEED_GROUP_TAG)
            if group is None and {"variant", "backend", "device"} <= tags.keys():
                group = seed_group(setup_name(tags["variant"], tags.get("overrides", "")), tags["backend"],
                                   tags["device"])
                self.tracker.log(run.info.run_id, tags={SEED_GROUP_TAG: group})
            if group is not None:
                groups.append(group)
        return groups

    def finish_invocation(self, rows: list[ResultRow], reused: int, status: str, artifacts: Sequence[Path] = ()) -> None:
        """Counts (`reused` of the completed `rows` were completed before), the skipped cells with their reasons,
        comparison figures and `artifacts` (files, e.g. the effects); then the invocation ends. A stopped
        invocation records counts only: no figures in a cleanup."""
        counts = {f"runs_{s.value}": float(sum(r.status is s for r in rows)) for s in Status}
        counts["runs_completed"] -= reused
        counts["runs_reused"] = float(reused)
        self.tracker.log(self.invocation_id, metrics=counts)
        skipped = [{"run": r.run, "reason": r.reason} for r in rows if r.status is Status.SKIPPED]
        if skipped:
            self.tracker.log_dict(self.invocation_id, skipped, "skipped_runs.json")
            self.tracker.log(self.invocation_id, tags={"skipped": f"{len(skipped)} run(s): see skipped_runs.json"})
        frame = convert.rows_to_frame(rows)
        for path in artifacts:
            self.tracker.log_file(self.invocation_id, path)
        if status == "FINISHED" and any(r.status is Status.COMPLETED for r in rows):
            for file, figure in figures.invocation_figures(frame).items():
                self.tracker.log_figure(self.invocation_id, figure, file)
            self.tracker.log(self.invocation_id, metrics=compare.aggregate_metrics(frame))
            self.tracker.log_text(self.invocation_id, compare.compare_markdown(compare.compare_table(frame)),
                                  "compare.md")
        self.tracker.end_run(self.invocation_id, status)

    # ------------------------------------------------------------ runs

    def start_run(self, job: Job) -> str:
        """The run in MLflow, RUNNING while it executes."""
        tags = {**identity_tags(job_row(job)), DRIVER_TAG: self._driver, "spec_file": str(job.variant.file),
                "executor": self.executor}
        return self.tracker.start_run(job.name, parent_id=self.invocation_id, tags=tags)

    def provenance(self, row: ResultRow, result: JobResult) -> ResultRow:
        p = result.provenance
        return row.update(executor=self.executor, concurrent_workers=self.concurrent_workers, cores=p.cores,
                          host=p.host, hardware=p.hardware, cpu_model=p.cpu_model, gpu_name=p.gpu_name,
                          gpu_driver=p.gpu_driver, cuda_version=p.cuda_version,
                          framework_version=p.framework_version or row.framework_version)

    def record(self, job: Job, run_id: str, result: JobResult, *, code_version: str) -> ResultRow:
        """A decided job's result (its fingerprint set), whatever it was: logged, written to results/, and
        returned as its row."""
        row = job_row(job).update(fingerprint=job.fingerprint, code_version=code_version, mlflow_run_id=run_id,
                                  finished_at=_now())
        if result.status is Status.SKIPPED:
            self.tracker.delete_run(run_id)  # no empty run: the invocation lists it instead
            return self.skipped(job, result.reason)
        row = self.provenance(row, result)
        if result.notes:  # said once, here; kept in the row's reason below
            self.warn(f"{job.name}: {'; '.join(result.notes)}")
        if result.status is Status.FAILED or result.result is None:
            row = self.failed(job, run_id, row, "; ".join([result.reason or "no result", *result.notes]),
                              result.traceback)
            return self._stop_if_full(job, result, row)
        run = result.result
        other = result.other_load_cores
        row = judged(row.update(status=Status.COMPLETED, **result_fields(job, run, result.baseline),
                                data_prepare_seconds=result.data_prepare_seconds, peak_rss_mb=result.peak_rss_mb,
                                rss_at_start_mb=result.rss_at_start_mb, other_load_cores=other,
                                timing=timing_condition(other)))
        if result.notes:
            row = row.update(reason="; ".join(filter(None, [row.reason, *result.notes])))
        try:
            self._log_completed(job, run_id, row, result)
        except Exception as err:  # the store refused (disk full, server gone): the run is not complete there
            if is_out_of_space(err):
                raise  # the invocation stops (exit 2); the run, never tagged completed, is marked KILLED next time
            return self.failed(job, run_id, row, f"trained, but recording it in MLflow failed: {type(err).__name__}: "
                                                 f"{err}")
        return self._stop_if_full(job, result, self._write(row))

    @staticmethod
    def _stop_if_full(job: Job, result: JobResult, row: ResultRow) -> ResultRow:
        """The run is recorded; a checkpoint that found the disk full stops the invocation before the next."""
        if result.out_of_space:
            raise OutOfSpace(job.checkpoint_dir or ".")
        return row

    def failed(self, job: Job, run_id: str, row: ResultRow, reason: str, traceback: str = "") -> ResultRow:
        row = row.update(status=Status.FAILED, reason=reason, met_expectation=None)
        try:
            self.tracker.log(run_id, tags={STATUS_TAG: Status.FAILED.value, "reason": reason})
            if traceback:
                self.tracker.log_text(run_id, traceback, "traceback.txt")
            self.tracker.end_run(run_id, "FAILED")
        except Exception as err:  # the store itself is failing: results/ still gets the row
            self.warn(f"could not mark {row.run} FAILED in MLflow ({type(err).__name__}: {err})")
        return self._write(row)

    def killed(self, job: Job, run_id: str, reason: str = "interrupted (Ctrl-C or SIGTERM)") -> ResultRow:
        row = job_row(job).update(status=Status.KILLED, reason=reason, mlflow_run_id=run_id, finished_at=_now(),
                                  executor=self.executor)
        self.tracker.log(run_id, tags={STATUS_TAG: Status.KILLED.value, "reason": reason})
        self.tracker.end_run(run_id, "KILLED")
        return self._write(row)

    def skipped(self, job: Job, reason: str) -> ResultRow:
        return self._write(job_row(job).update(status=Status.SKIPPED, reason=reason, finished_at=_now()))

    def reused(self, job: Job, row: ResultRow) -> ResultRow:
        """A run completed before (its row in runs.csv), judged against the spec as it is now."""
        current = job_row(job)
        row = judged(row.update(run=current.run, min_test_accuracy=current.min_test_accuracy,
                                reference_accuracy=current.reference_accuracy,
                                reference_notes=current.reference_notes))
        return self._write(row)

    # ------------------------------------------------------------ writing

    def _log_completed(self, job: Job, run_id: str, row: ResultRow, result: JobResult) -> None:
        run = result.result
        assert run is not None
        params, metrics, tags = convert.to_mlflow(row)
        status = tags.pop(STATUS_TAG)
        spec_params = flatten(job.spec.model_dump(mode="json"))
        if run.resumed_from_epoch:
            tags[RESUMED_TAG] = str(run.resumed_from_epoch)
        self.tracker.log(run_id, params={**spec_params, **params}, metrics=metrics, tags=tags,
                         series=history_series(run.history), timestamped=result.system_metrics)
        data = result.data
        if data is not None:
            self.tracker.log_dataset(run_id, data.dataset, data.key, data.source, data.splits)
            self.tracker.log_dict(run_id, data.preprocessing, "preprocessing.json")
        self.tracker.log_text(run_id, yaml.safe_dump(job.spec.model_dump(mode="json"), sort_keys=False), "spec.yaml")
        self.tracker.log_text(run_id, job.spec.summary().table(), "model_summary.txt")
        if result.baseline is not None and data is not None:
            self._log_baseline(job, result.baseline)
        y_true = result.test_labels
        if y_true is not None:
            y_pred = run.test_predictions
            self.tracker.log_text(run_id, classification_report(y_true, y_pred, digits=4, zero_division=0),
                                  "classification_report.txt")
            self.tracker.log_dict(run_id, classification_report(y_true, y_pred, output_dict=True, zero_division=0),
                                  "classification_report.json")
            matrix = confusion_matrix(y_true, y_pred).tolist()
            self.tracker.log_dict(run_id, {"confusion_matrix": matrix}, "confusion_matrix.json")
        else:
            matrix = None
        for file, figure in figures.run_figures(run.history, matrix, job.name).items():
            self.tracker.log_figure(run_id, figure, file)
        self.tracker.log_file_as(run_id, self._architecture(job), "architecture.png")  # drawn once per description
        if result.model_archive:
            self.tracker.log_model_archive(run_id, result.model_archive)
        # Only now, with everything logged, is the run complete.
        self.tracker.log(run_id, tags={STATUS_TAG: status})
        self.tracker.end_run(run_id, "FINISHED")

    def _architecture(self, job: Job) -> Path:
        """The PNG of the run's architecture diagram, drawn once per layer description and kept in the results
        folder's architectures/ (with an index of which variants share it); logged with every run."""
        if self._diagrams is None:
            self._diagrams = DiagramFolder(self.results.path / ARCHITECTURES)
        return self._diagrams.diagram(job.variant.name, job.spec)

    def _log_baseline(self, job: Job, baseline: BaselineResult) -> None:
        if baseline.key in self._logged_baselines:
            return
        self._logged_baselines.add(baseline.key)
        # One run per data digest in the experiment: the same fit on the same data is not logged again.
        if self.tracker.search(f"tags.`{KIND_TAG}` = '{Kind.BASELINE.value}' and tags.`data_digest` = "
                               f"'{baseline.key}' and attributes.status = 'FINISHED'"):
            return
        d = job.spec.data
        name = f"baseline/logreg/{d.dataset}-{d.input_size}-{d.normalization}"
        run_id = self.tracker.start_run(name, parent_id=self.invocation_id, tags={
            KIND_TAG: Kind.BASELINE.value, "backend": "sklearn", "architecture": "logistic_regression",
            "dataset": d.dataset, "data_digest": baseline.key})
        self.tracker.log(run_id, params={"description": baseline.description, "n_train": baseline.n_train,
                                         **{f"data.{k}": v for k, v in d.model_dump().items()}},
                         metrics={"test_accuracy": baseline.test_accuracy, "train_seconds": baseline.train_seconds})
        self.tracker.end_run(run_id, "FINISHED")

    def _write(self, row: ResultRow) -> ResultRow:
        """Into runs.csv at once: an invocation killed outright keeps what it finished."""
        try:
            self.results.merge([row])
        except (OSError, ResultsError) as err:
            if is_out_of_space(err) or (isinstance(err, OSError) and short_of_space(self.results.path)):
                raise OutOfSpace(self.results.path) from err  # runs.csv is whole as it was (written atomically)
            where = f"its MLflow run {row.mlflow_run_id} keeps" if row.mlflow_run_id else "nothing else keeps"
            self._unwritten.append(row.run)
            self.warn(f"could not write {row.run} to {self.results.runs_csv} ({err}); {where} its numbers, but "
                      "runs.csv is the record that reuse and every report read: the next invocation trains it again")
        return row

    @property
    def unwritten(self) -> list[str]:
        return list(self._unwritten)


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
