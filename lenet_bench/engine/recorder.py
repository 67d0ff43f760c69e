"""The recorder: the one place that writes MLflow and a results folder.

The driver hands it each job's plain `JobResult`; run_row.py makes the run's `ResultRow` of the
job and that result, and the recorder logs the run (params, metrics, curves, system metrics,
artifacts, the model) and merges the row into `runs.csv`. A run is tagged completed only after
its model and figures are logged, so a run cut short there never looks complete. Skipped cells are recorded on the invocation's run,
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
from lenet_bench.engine.run_row import job_row, judged, outcome_row
from lenet_bench.results import compare, convert, figures
from lenet_bench.results.diagrams import DiagramFolder
from lenet_bench.results.identity import seed_group, setup_name
from lenet_bench.results.readback import history_series
from lenet_bench.results.row import (
    DRIVER_TAG,
    KIND_TAG,
    STATUS_TAG,
    Kind,
    ResultRow,
    Status,
)
from lenet_bench.results.table import ResultsError, ResultsFolder
from lenet_bench.results.tracking import Tracker, flatten
from lenet_bench.results.view import SEED_GROUP_TAG, identity_tags, store_view

ARCHITECTURES = "architectures"  # in a results folder: one diagram per layer description
RESUMED_TAG = "lenet_bench.resumed_from_epoch"  # a run trained on from its checkpoint of that epoch

if TYPE_CHECKING:

    from lenet_bench.engine.baseline import BaselineResult
    from lenet_bench.engine.execute import JobResult
    from lenet_bench.engine.plan import Job


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
        groups = set(runs) | {job.identity.seed_group for job in jobs}
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

    def record(self, job: Job, run_id: str, result: JobResult, *, code_version: str) -> ResultRow:
        """A decided job's result (its fingerprint set), whatever it was: logged, written to results/, and
        returned as its row."""
        if result.status is Status.SKIPPED:
            self.tracker.delete_run(run_id)  # no empty run: the invocation lists it instead
            return self.skipped(job, result.reason)
        if result.notes:  # said once, here; kept in the row's reason
            self.warn(f"{job.name}: {'; '.join(result.notes)}")
        row = outcome_row(job, result, executor=self.executor, concurrent_workers=self.concurrent_workers,
                          code_version=code_version, run_id=run_id, finished_at=_now())
        if row.status is Status.FAILED:
            return self._stop_if_full(job, result, self.failed(run_id, row, row.reason, result.traceback))
        try:
            self._log_completed(job, run_id, row, result)
        except Exception as err:  # the store refused (disk full, server gone): the run is not complete there
            if is_out_of_space(err):
                raise  # the invocation stops (exit 2); the run, never tagged completed, is marked KILLED next time
            return self.failed(run_id, row, f"trained, but recording it in MLflow failed: {type(err).__name__}: {err}")
        return self._stop_if_full(job, result, self._write(row))

    @staticmethod
    def _stop_if_full(job: Job, result: JobResult, row: ResultRow) -> ResultRow:
        """The run is recorded; a checkpoint that found the disk full stops the invocation before the next."""
        if result.out_of_space:
            raise OutOfSpace(job.checkpoint_dir or ".")
        return row

    def failed(self, run_id: str, row: ResultRow, reason: str, traceback: str = "") -> ResultRow:
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
