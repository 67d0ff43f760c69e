"""Where an invocation's wall time goes: training, and every second around it, per phase.

Each executed run reports the seconds of its own steps (framework import, data, baseline, model
build, the backend's train call, model export, the framework's release of the finished run); the
backend's call splits into training steps and augmentation (together the runs' own train_seconds: data.augment's
wait for an epoch's distorted images and their loading is on the epoch's clock), validation evaluations (time
to target counts them) and the rest of the call (test-set evaluation, inference timing). Only the epochs this
invocation trained count: a run resumed from a checkpoint carries its earlier epochs in its history, but
another invocation trained them, in its own wall time. The driver
times each run's slot, from handing the job over to its result: what the run's phases leave of it is
the hand-off to and from the worker. The driver adds what it does
itself: deciding (data keys, fingerprints, reuse), MLflow logging, and the reports. With several
runs at once the runs' phases overlap: shares are of the run-seconds available (wall x runs at once).
Deciding and the reports hold every slot (nothing trains meanwhile); logging a run holds one: the
slot whose run just ended, or is about to start, while the other runs go on training.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from lenet_bench.training.result import EpochRecord, RunResult

OVERHEAD_MD = "overhead.md"
TRAINING = "training steps"
AUGMENTATION = "augmentation (in training)"  # part of the epochs' seconds, as the runs' train_seconds count it
IN_TRAINING = (TRAINING, AUGMENTATION)  # what "outside training" leaves out
MLFLOW_LOGGING = "MLflow logging"
ONE_SLOT = (MLFLOW_LOGGING,)  # driver phases that hold one slot, not all of them
# A run's time in its slot that none of its own phases covers: handing the job to its worker process and
# its result back (pickling, the pool's queues, the worker's start-up for its first job).
HAND_OFF = "hand-off to and from the worker"
TOP_RUNS = 5  # overhead.md names the runs with the most seconds outside training


class PhaseTimer:
    """`with timed("data"): ...` adds the block's wall seconds to phases["data"]."""

    def __init__(self, phases: dict[str, float]):
        self.phases = phases

    @contextlib.contextmanager
    def __call__(self, phase: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phases[phase] = self.phases.get(phase, 0.0) + time.perf_counter() - start


def epochs_trained_here(result: RunResult) -> list[EpochRecord]:
    """The epochs this invocation trained: a resumed run's history also holds those of the one that stopped."""
    return [record for record in result.history if record.epoch > result.resumed_from_epoch]


def split_run(phases: dict[str, float], result: RunResult) -> dict[str, float]:
    """A trained run's phases, its backend call split by the epochs this invocation trained."""
    epochs = epochs_trained_here(result)
    return split_backend_call(phases, sum(r.seconds for r in epochs), sum(r.eval_seconds for r in epochs),
                              sum(r.augment_seconds for r in epochs))


def split_backend_call(phases: dict[str, float], train_seconds: float, eval_seconds: float,
                       augment_seconds: float = 0.0) -> dict[str, float]:
    """A run's phases with the backend's train call split into training steps, augmentation (a part of
    `train_seconds`), validation and the rest."""
    split = {k: v for k, v in phases.items() if k != "backend.train"}
    call = phases.get("backend.train", 0.0)
    split[TRAINING] = train_seconds - augment_seconds
    if augment_seconds:
        split[AUGMENTATION] = augment_seconds
    split["validation evaluations"] = eval_seconds
    split["test evaluation, inference timing"] = max(call - train_seconds - eval_seconds, 0.0)
    return split


def outside_training(table: pd.DataFrame) -> float:
    """The share of the run-seconds available spent outside the runs' training (its steps and augmentation)."""
    return 1 - float(table.loc[table["phase"].isin(IN_TRAINING), "share"].sum()) if len(table) else 0.0


def overhead_table(run_phases: list[dict[str, float]], driver_phases: dict[str, float], wall_seconds: float,
                   capacity: int) -> pd.DataFrame:
    """seconds and share of the available run-seconds per phase, training (steps, augmentation) first;
    'unaccounted' the rest."""
    totals: dict[str, float] = {}
    for phases in run_phases:
        for phase, seconds in phases.items():
            totals[phase] = totals.get(phase, 0.0) + seconds
    for phase, seconds in driver_phases.items():
        slots = 1 if phase in ONE_SLOT else capacity
        totals[phase] = totals.get(phase, 0.0) + seconds * slots
    available = max(wall_seconds * capacity, 1e-9)
    totals["unaccounted (start-up, waiting, idle slots)"] = max(available - sum(totals.values()), 0.0)
    first = [p for p in IN_TRAINING if p in totals]
    order = first + sorted((p for p in totals if p not in IN_TRAINING), key=lambda p: -totals[p])
    return pd.DataFrame({"phase": order, "seconds": [totals[p] for p in order],
                         "share": [totals[p] / available for p in order]})


def runs_outside_training(run_phases: dict[str, dict[str, float]], top: int = TOP_RUNS) -> pd.DataFrame:
    """The `top` runs (of each run's phases by its name) with the most seconds outside training, with their
    largest phases, so that a stall in one run is found by name instead of hiding in a total."""
    rows = []
    for name, run in run_phases.items():
        outside = {phase: seconds for phase, seconds in run.items() if phase not in IN_TRAINING}
        largest = sorted(outside.items(), key=lambda item: -item[1])[:3]
        rows.append({"run": name, "training s": sum(run.get(phase, 0.0) for phase in IN_TRAINING),
                     "outside training s": sum(outside.values()),
                     "largest": ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in largest if seconds >= 0.05)})
    table = pd.DataFrame(rows, columns=["run", "training s", "outside training s", "largest"])
    return table.sort_values("outside training s", ascending=False, kind="stable").head(top)


def overhead_markdown(table: pd.DataFrame, wall_seconds: float, capacity: int, runs: int,
                      top_runs: pd.DataFrame | None = None) -> str:
    outside = outside_training(table)
    rows = [{"phase": phase, "seconds": f"{seconds:,.1f}", "share": f"{100 * share:.1f}%"}
            for phase, seconds, share in zip(table["phase"], table["seconds"].astype(float),
                                             table["share"].astype(float), strict=True)]
    return (f"# Where the time went\n\nThe last invocation: {runs} run(s) trained, {wall_seconds:,.1f} s of wall time, "
            f"{capacity} run(s) at a time (shares are of wall x runs at once). Outside training: "
            f"{100 * outside:.1f}%.\n\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"
            + _top_runs_markdown(top_runs))


def _top_runs_markdown(top_runs: pd.DataFrame | None) -> str:
    if top_runs is None or top_runs.empty:
        return ""
    shown = top_runs.assign(**{column: top_runs[column].map(lambda s: f"{s:,.1f}")
                               for column in ("training s", "outside training s")})
    return (f"\n## The {len(shown)} run(s) with the most time outside training\n\n"
            + shown.to_markdown(index=False, disable_numparse=True) + "\n")
