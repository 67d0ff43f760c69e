"""The driver: decide -> execute -> record, for every run of an invocation.

It decides (selection, installed backends, data, fingerprint, runs completed before), hands
the runs left to an executor, and records each result as it comes back. It alone writes
MLflow and results/ (through the recorder), so workers never contend for the store.

Ctrl-C or SIGTERM marks every run in flight KILLED and keeps every finished one; runs left
RUNNING by an invocation killed outright are marked KILLED by the next one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import fnmatch
import math
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path

from lenet_bench import stopping
from lenet_bench.console import InvocationProgress, RunProgress, console, duration
from lenet_bench.data import DataError
from lenet_bench.data.cache import DataCache
from lenet_bench.data.registry import DATASETS
from lenet_bench.disk_space import OutOfSpace, is_out_of_space, short_of_space
from lenet_bench.engine import estimate, executors, phases
from lenet_bench.engine.backends_here import BackendsHere
from lenet_bench.engine.claims import CLAIMS, Claims
from lenet_bench.engine.execute import DATA_UNAVAILABLE, JobResult
from lenet_bench.engine.fingerprint import code_version, fingerprint
from lenet_bench.engine.plan import Job, RunOptions, plan_jobs
from lenet_bench.engine.recorder import Recorder
from lenet_bench.results import report  # at start, so that a long invocation reports with the code it trained with
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import ResultsFolder
from lenet_bench.results.tracking import Tracker, resolve_tracking_uri
from lenet_bench.spec import DEFAULT_SUITE, SpecError, Variant, load_variants
from lenet_bench.training import checkpoint
from lenet_bench.training.checkpoint import Checkpoint

# The results folder's files that the invocation's run in MLflow carries too (the effects of every run in it).
INVOCATION_ARTIFACTS = ("effects.md", "time_to_train.md", "time_to_train.png", "overhead.md")  # + effects_*.png
STOP_POLL_S = 0.5  # how often the driver, waiting on workers, looks whether a stop was asked for


def make_executor(options: RunOptions, data: DataCache) -> executors.Executor:
    if options.cluster:
        return executors.DaskExecutor(options.cluster)
    if options.workers:
        return executors.LocalWorkers(options.workers)
    return executors.InlineExecutor(lambda job: RunProgress(job.name, job.spec.train.epochs, live=options.live), data)


class Action(enum.Enum):
    TRAIN = "train"  # from scratch, or on from its checkpoint's epoch (the job says which)
    REUSE = "reuse"  # an earlier run of the same fingerprint is in the results table
    SKIP = "skip"  # with its reason


@dataclasses.dataclass(frozen=True)
class Decision:
    """What an invocation does with one job, decided before any training."""

    job: Job  # TRAIN: with its fingerprint, work left and checkpoint filled in
    action: Action
    reason: str = ""  # SKIP: why
    earlier: ResultRow | None = None  # REUSE: the earlier run's row


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM, after the runs in flight were marked KILLED; carries every row so far."""

    def __init__(self, rows: list[ResultRow]):
        super().__init__()
        self.rows = rows


class Driver:
    def __init__(self, options: RunOptions):
        self.options = options
        self.unwritten: list[str] = []  # runs recorded in MLflow that the results folder could not take
        self.tracker: Tracker | None = None
        self.driver_phases: dict[str, float] = {}  # seconds of the driver's own work, per phase (phases.py)
        self.run_phases: dict[str, dict[str, float]] = {}  # each executed run's phases by its name, training split out
        self.timed = phases.PhaseTimer(self.driver_phases)
        self.claims: Claims | None = None
        self.reused: set[str] = set()  # the runs (by name) completed by an earlier invocation, not trained now
        self.data = DataCache(options.data_dir)  # the invocation's: loaded and keyed once, trained on when inline
        self.here = BackendsHere()  # what each backend can do here: asked once for the invocation

    def run(self, variants: list[Variant], experiment: str, jobs: list[Job] | None = None) -> list[ResultRow]:
        """Every run of `variants` (`jobs`: their runs as the caller planned them, when it did), as its row;
        `reused` names those completed before."""
        started = time.perf_counter()
        options = self.options
        jobs = plan_jobs(variants, options) if jobs is None else jobs
        results = ResultsFolder(options.results_dir, update_reference=options.update_reference)
        # Before any training: a folder (or its claims, checkpoints) that cannot take the results is found now.
        results.check_writable(subfolders=(CLAIMS, checkpoint.CHECKPOINTS))
        self.claims = Claims(results.path)
        tracker = self.tracker = Tracker(resolve_tracking_uri(options.tracking_uri), experiment)
        tracker.check_room()  # and a full disk under the MLflow store
        executor = make_executor(options, self.data)
        recorder = Recorder(tracker, results, executor=executor.name, concurrent_workers=executor.capacity,
                            warn=lambda text: console.print(f"[yellow]warning:[/] {text}", markup=True, highlight=False))
        for name in recorder.mark_orphans():
            console.print(f"marked KILLED: {name} (left RUNNING by an invocation that was killed outright)", markup=False)
        console.print(f"lenet_bench: {len(jobs)} run(s) on {executor.name} ({executor.capacity} at a time), "
                      f"MLflow {tracker.tracking_uri} experiment {experiment!r}, results in {results.path}/",
                      markup=False)
        recorder.start_invocation(f"invocation-{time.strftime('%Y%m%d-%H%M%S')}", {
            "paths": [str(v.file) for v in variants][:50], "runs": len(jobs), "executor": executor.name,
            "workers": executor.capacity, "overrides": ",".join(f"{k}={v}" for k, v in options.overrides().items())},
            jobs=jobs)
        rows: list[ResultRow] = []
        status = "KILLED"
        try:
            with self.timed("decide (data keys, fingerprints, reuse)"):
                to_run = self._decide(jobs, results, recorder, rows, executor)
            announce_plan(to_run, len(self.reused))
            seconds, expected = self._expect(to_run, results, executor)
            self._execute(to_run, executor, recorder, rows, len(jobs), seconds, expected)
            status = "FINISHED"
        finally:
            executor.shutdown(kill=status != "FINISHED")
            self.claims.release_all()
            # A stopped invocation only records: drawing figures is no cleanup (`report` draws them later).
            with self.timed("reports (tables, figures)"):
                written = self._write_reports(results, rows, variants) if status == "FINISHED" else []
            if status == "FINISHED" and self.run_phases:
                written.append(self._write_overhead(results, time.perf_counter() - started, executor.capacity))
            try:
                recorder.finish_invocation(rows, len(self.reused), status,
                                           artifacts=[results.path / name for name in written
                                                      if name in INVOCATION_ARTIFACTS
                                                      or fnmatch.fnmatch(name, "effects_*.png")])
            except Exception:
                if status == "FINISHED":
                    raise
                # Already stopping for an error (a full disk): that one is what the user must see, not this.
            self.unwritten = recorder.unwritten
        return rows

    # ------------------------------------------------------------ decide

    def _decide(self, jobs: list[Job], results: ResultsFolder, recorder: Recorder,
                rows: list[ResultRow], executor: executors.Executor) -> list[Job]:
        """Decide every job, then record the decisions that end here (reuse, skip) in one place; the jobs to train."""
        recorded = results.completed_by_fingerprint()
        decisions = [self._decision(job, results, recorded, executor) for job in jobs]
        skipped = [recorder.skipped(d.job, d.reason) for d in decisions if d.action is Action.SKIP]
        rows += [self._reused(recorder.reused(d.job, d.earlier)) for d in decisions
                 if d.action is Action.REUSE and d.earlier is not None]
        announce_skips(skipped)
        rows += skipped
        return [d.job for d in decisions if d.action is Action.TRAIN]

    def _decision(self, job: Job, results: ResultsFolder, recorded: dict[str, ResultRow],
                  executor: executors.Executor) -> Decision:
        """What this invocation does with `job`. Deciding to train claims the run's fingerprint (another live
        invocation training it makes it a skip) and, with --force, drops its checkpoint."""
        # The executor first: what it cannot take (a GPU run on a cluster without a GPU worker) is its device.
        reason = executor.cannot_run(job) or self._skip_reason(job)
        if reason is None:
            try:
                data_key = self.data.key(job.spec.data)
                dataset_size = len(self.data.raw(job.spec.data.dataset).y_train)
            except DataError as err:
                reason = f"{DATA_UNAVAILABLE}: {err}{_where_to_get(job.spec.data.dataset)}"
        if reason:
            return Decision(job, Action.SKIP, reason)
        print_ = fingerprint(job, data_key, self.here.framework_versions(job.backend))
        if not self.options.force and print_ in recorded:  # the results table says this exact run is done
            return Decision(job, Action.REUSE, earlier=recorded[print_])
        saved = self._checkpoint(results, print_)
        claimed = self.claims.claim(print_) if self.claims else None
        if claimed:  # another live invocation trains it into this results folder (its checkpoint too)
            return Decision(job, Action.SKIP, claimed)
        if self.options.force and saved:
            saved.remove()  # --force trains again from scratch (and checkpoints it anew)
        return Decision(self._decided(job, print_, estimate.training_flops(job, dataset_size), saved), Action.TRAIN)

    def _checkpoint(self, results: ResultsFolder, print_: str) -> Checkpoint | None:
        """Where the run saves its epochs: beside the user's results, keyed by its fingerprint. None in the
        reference results (never written there) and on Dask (a worker may not see this machine's folders)."""
        if results.is_reference or self.options.cluster:
            return None
        return Checkpoint(checkpoint.folder_for(results.path, print_))

    @staticmethod
    def _decided(job: Job, print_: str, work: float, saved: Checkpoint | None) -> Job:
        """The job as it will train: its fingerprint, the work left, and its checkpoint's folder and epoch."""
        if saved is None:
            return dataclasses.replace(job, fingerprint=print_, work=work)
        epoch = min(saved.saved_epoch() or 0, job.spec.train.epochs)
        left = work * (job.spec.train.epochs - epoch) / job.spec.train.epochs
        return dataclasses.replace(job, fingerprint=print_, work=left, resume_epoch=epoch,
                                   checkpoint_dir=str(saved.folder))

    def _skip_reason(self, job: Job) -> str | None:
        return self.here.skip_reason(job, cluster=bool(self.options.cluster),
                                inline=not (self.options.workers or self.options.cluster))

    # ------------------------------------------------------------ execute and record

    def _expect(self, to_run: list[Job], results: ResultsFolder,
                executor: executors.Executor) -> tuple[list[float], float]:
        """Say how long the runs left will take, from speeds measured before; each run's seconds and the
        invocation's (NaN: unknown)."""
        if not to_run:
            return [], math.nan
        book = estimate.measured_speeds(results.path)
        guesses = [book.estimate(job, executor.cores_per_run, job.work) for job in to_run]
        seconds = estimate.invocation_seconds(guesses, executor.capacity)
        unknown = sum(not math.isfinite(g.seconds) for g in guesses)
        total = sum(job.work for job in to_run) / 1e12
        text = f"expected: about {duration(seconds)}" if math.isfinite(seconds) else "expected: unknown"
        console.print(f"{text} for {len(to_run)} run(s) to train ({total:,.1f} TFLOP of training, "
                      f"{executor.capacity} at a time, speeds measured in earlier results)"
                      + (f"; {unknown} run(s) of a backend/device never measured are not counted" if unknown else ""),
                      markup=False)
        return [g.seconds for g in guesses], seconds

    def _execute(self, to_run: list[Job], executor: executors.Executor, recorder: Recorder,
                 rows: list[ResultRow], total: int, seconds: list[float], expected: float) -> None:
        weights = run_weights(to_run, seconds)  # the ETA and the order of the runs read the same weights
        progress = InvocationProgress(total=total, done=len(rows), work=sum(weights.values()),
                                      expected_seconds=expected)
        pending = deque(longest_first(to_run, weights) if executor.capacity > 1 else to_run)
        in_flight: dict[Future[JobResult], tuple[Job, str]] = {}
        started: dict[str, Job] = {}  # run id -> job, until recorded
        submitted: dict[str, float] = {}  # job name -> when it was handed to the executor
        try:
            while pending or in_flight:
                stopping.check()
                while pending and len(in_flight) < executor.capacity:
                    job = pending.popleft()
                    with self.timed(phases.MLFLOW_LOGGING):
                        run_id = recorder.start_run(job)
                    started[run_id] = job
                    progress.started(job.name)
                    submitted[job.name] = time.perf_counter()
                    in_flight[executor.submit(job)] = (job, run_id)  # inline: it executes here
                done, _ = wait(in_flight, timeout=STOP_POLL_S, return_when=FIRST_COMPLETED)
                for future in done:
                    job, run_id = in_flight.pop(future)
                    executed = future.result()
                    self._account(job, executed, time.perf_counter() - submitted.pop(job.name))
                    with self.timed(phases.MLFLOW_LOGGING):
                        row = recorder.record(job, run_id, executed, code_version=code_version(job.backend))
                    started.pop(run_id)
                    if self.claims:
                        self.claims.release(job.fingerprint)
                    if row.status is Status.COMPLETED:
                        drop_checkpoint(job)
                    rows.append(row)
                    progress.finished(row.outcome_line(), row.status.has_numbers, weights[job.name])
        except KeyboardInterrupt:
            for run_id, job in started.items():
                rows.append(recorder.killed(job, run_id))
            raise Interrupted(rows) from None

    def _account(self, job: Job, executed: JobResult, slot_seconds: float) -> None:
        """Add a trained run's phases; `slot_seconds` from handing it to the executor to its result here."""
        if executed.result is None or not executed.phases:
            return
        split = phases.split_run(executed.phases, executed.result)  # only the epochs trained in this invocation
        split[phases.HAND_OFF] = max(slot_seconds - sum(executed.phases.values()), 0.0)
        self.run_phases[job.name] = split

    def _write_overhead(self, results: ResultsFolder, wall_seconds: float, capacity: int) -> str:
        """overhead.md: every second of this invocation outside training, per phase; its name."""
        table = phases.overhead_table(list(self.run_phases.values()), self.driver_phases, wall_seconds, capacity)
        outside = phases.outside_training(table)
        console.print(f"time outside training: {100 * outside:.1f}% of {duration(wall_seconds)} "
                      f"({results.path / phases.OVERHEAD_MD})", markup=False)
        text = phases.overhead_markdown(table, wall_seconds, capacity, len(self.run_phases),
                                        phases.runs_outside_training(self.run_phases))
        try:
            (results.path / phases.OVERHEAD_MD).write_text(text)
        except OSError as err:
            console.print(f"warning: could not write {phases.OVERHEAD_MD} ({err})", markup=False)
        return phases.OVERHEAD_MD

    def _reused(self, row: ResultRow) -> ResultRow:
        self.reused.add(row.run)
        console.print(row.outcome_line(reused=True), markup=False)
        return row

    def _write_reports(self, results: ResultsFolder, rows: list[ResultRow], variants: list[Variant]) -> list[str]:
        """compare.md, reproduction.md, effects.md and the figures, over every row of the folder; the names written."""
        if not any(r.status is Status.COMPLETED for r in rows):
            return []
        try:
            return report.write_comparison(results.read(), results.path, variants + _default_suite(variants))
        except OSError as err:
            if is_out_of_space(err) or short_of_space(results.path):
                raise OutOfSpace(results.path) from err
            console.print(f"warning: could not write the comparison to {results.path} ({err})", markup=False)
            return []


def _default_suite(variants: list[Variant]) -> list[Variant]:
    """The variants of specs/ that this invocation did not load: the results folder holds their runs too, and
    their matrices name the factors of effects.md (an invocation of one file must not lose them)."""
    if not DEFAULT_SUITE.is_dir():
        return []
    try:
        found = load_variants([DEFAULT_SUITE])
    except SpecError:
        return []  # only a help for the report: a broken default suite is for `validate` to say
    loaded = {v.name for v in variants}
    return [v for v in found if v.name not in loaded]


def announce_plan(to_run: list[Job], reused: int) -> None:
    """Say before training what this invocation reuses, resumes (from which epoch) and trains from scratch."""
    resumed = [job for job in to_run if job.resume_epoch]
    named = ", ".join(f"{job.name} from epoch {job.resume_epoch} of {job.spec.train.epochs}" for job in resumed[:3])
    more = f" and {len(resumed) - 3} more" if len(resumed) > 3 else ""
    console.print(f"reusing {reused} run(s) completed before, resuming {len(resumed)} from a checkpoint"
                  + (f" ({named}{more})" if resumed else "") + f", training {len(to_run) - len(resumed)} from scratch",
                  markup=False)


def drop_checkpoint(job: Job) -> None:
    """A completed run's checkpoint goes; so does the checkpoints folder once it is empty."""
    if job.checkpoint_dir is None:
        return
    Checkpoint(Path(job.checkpoint_dir)).remove()
    with contextlib.suppress(OSError):
        Path(job.checkpoint_dir).parent.rmdir()


def announce_skips(skipped: list[ResultRow]) -> None:
    """Say once, before anything trains, which runs are skipped and why: one line per reason, not per run."""
    announce_reasons([(row.run, row.reason) for row in skipped])


def announce_reasons(skipped: list[tuple[str, str]], noun: str = "run(s)", whole_names: bool = False) -> None:
    by_reason: dict[str, list[str]] = {}
    for name, reason in skipped:
        by_reason.setdefault(reason, []).append(name)
    for reason, names in by_reason.items():
        specs = sorted({name if whole_names else name.split("/", 1)[0] for name in names})
        shown = ", ".join(specs[:4]) + (f" and {len(specs) - 4} more" if len(specs) > 4 else "")
        console.print(f"skipping {len(names)} {noun} of {shown}: {reason}", markup=False)


def _where_to_get(dataset: str) -> str:
    info = DATASETS.get(dataset)
    if info is None or not info.mirrors:
        return ""
    return f" (it is published at {info.mirrors[0]}; put it in the data folder or pass --data-dir)"


def run_weights(runs: list[Job], seconds: Sequence[float] = ()) -> dict[str, float]:
    """How much of the invocation each run is, by name: its expected seconds (from measured speeds) when
    every run has one, else (or given none) its training FLOPs. Seconds first because FLOPs mislead across backends and
    models: a Keras-on-JAX run takes about 4x a PyTorch run of the same FLOPs on this CPU, LeNet-5 trains at
    fewer GFLOP/s than the 20/50/500 LeNet, and one-image runs take longer than their FLOPs say."""
    if len(seconds) == len(runs) and all(math.isfinite(s) for s in seconds):
        return {run.name: s for run, s in zip(runs, seconds, strict=True)}
    return {run.name: run.work for run in runs}


def longest_first(runs: list[Job], weights: dict[str, float] | None = None) -> list[Job]:
    """Runs in order of decreasing weight (`run_weights`; default their training FLOPs), ties in the specs'
    order. With several runs at once this shortens the whole invocation: a long run started last would hold
    one worker while the others sit idle."""
    weight = weights if weights is not None else run_weights(runs)
    return sorted(runs, key=lambda run: weight[run.name], reverse=True)  # sorted() is stable, also reversed
