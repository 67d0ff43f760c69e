"""What a person at a terminal sees: live progress on a TTY, plain lines elsewhere (CI, logs, workers)."""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from lenet_bench.training.result import EpochRecord

console = Console(stderr=True, highlight=False, soft_wrap=True)  # progress and messages: long lines are not cut
# A command's own output (tables); wide enough off a terminal that rows don't wrap in logs.
output = Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def is_interactive() -> bool:
    return sys.stderr.isatty()


def _epoch_text(record: EpochRecord, epochs: int) -> str:
    val = f" val_acc {record.val_accuracy:.4f}" if record.val_accuracy is not None else ""
    return (f"epoch {record.epoch}/{epochs} loss {record.train_loss:.4f} acc {record.train_accuracy:.4f}"
            f"{val} {record.seconds:.1f}s")


class RunProgress:
    """The backend's `Progress` for one run: a live bar on a terminal, one line per epoch otherwise."""

    def __init__(self, label: str, epochs: int, live: bool | None = None):
        self.label = label
        self.epochs = epochs
        self.live = is_interactive() if live is None else live
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def start(self, total_steps: int) -> None:
        if not self.live:
            return
        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(), console=console, transient=True,
        )
        self._bar.start()
        self._task = self._bar.add_task(self.label, total=total_steps, status=f"epoch 1/{self.epochs}")

    def advance(self, steps: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, steps)

    def epoch_done(self, record: EpochRecord) -> None:
        text = _epoch_text(record, self.epochs)
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, status=text)
            if record.epoch == self.epochs:
                self.close()
        console.print(f"  {self.label}: {text}", markup=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


class InvocationProgress:
    """The invocation's progress: runs done and left, and an ETA from the first second.

    Before any run finishes, the ETA is the estimate from speeds measured earlier (engine.estimate)
    less the time elapsed. Then it is the work left over the work finished per second of this
    invocation, so workers running in parallel count as they should. A run's work is its expected
    seconds when every run has one (FLOPs alone undercount small models: a LeNet-5 trains at a third of
    the 20/50/500 LeNet's GFLOP/s), else its training FLOPs (images x epochs x FLOPs per image).
    """

    def __init__(self, total: int, done: int, work: float, expected_seconds: float = math.nan):
        self.total, self.done, self.launched = total, done, done
        self.work_left, self.work_done = work, 0.0
        self.expected_seconds = expected_seconds
        self.start = time.monotonic()

    def eta(self) -> float:
        elapsed = time.monotonic() - self.start
        if self.work_done and elapsed > 0:
            return self.work_left / (self.work_done / elapsed)
        return max(self.expected_seconds - elapsed, 0.0) if math.isfinite(self.expected_seconds) else math.nan

    def started(self, name: str) -> None:
        self.launched += 1
        eta = self.eta()
        console.print(f"[{self.launched}/{self.total}] {name}" + (f"  (ETA {duration(eta)})" if math.isfinite(eta) else ""),
                      markup=False)

    def finished(self, line: str, has_numbers: bool, work: float) -> None:
        """A run ended: its line (results.row.ResultRow.outcome_line), whether it counts as work done, and its work."""
        self.done += 1
        self.work_left -= work
        if has_numbers:
            self.work_done += work
        console.print(line, markup=False)
        left = self.total - self.done
        if left:
            elapsed = time.monotonic() - self.start
            console.print(f"  progress: {self.done}/{self.total} done, {left} left, "
                          f"{duration(elapsed)} elapsed, ETA {duration(self.eta())}", markup=False)
