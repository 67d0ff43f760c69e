"""What a person at a terminal sees: live progress on a TTY, plain lines elsewhere (CI, logs)."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from lenet_bench.training import EpochRecord

console = Console(stderr=True, highlight=False)  # progress and messages
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
        self._task = None

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
        if self._bar is not None:
            self._bar.advance(self._task, steps)

    def epoch_done(self, record: EpochRecord) -> None:
        text = _epoch_text(record, self.epochs)
        if self._bar is not None:
            self._bar.update(self._task, status=text)
            if record.epoch == self.epochs:
                self.close()
        console.print(f"  {self.label}: {text}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
