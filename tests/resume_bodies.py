"""The body of test_resume.py's per-backend test: train a run straight through, then the same run stopped
after an epoch and resumed from its checkpoint, and hand back plain data (it runs in the test process or,
for Keras on JAX, in a fresh one: backend_cases.py)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec import Spec
from lenet_bench.training.checkpoint import Checkpoint
from lenet_bench.training.result import EpochRecord, RunResult, SilentProgress

STOP_AFTER = 1  # the last complete epoch when the stop comes
RESUMED = Spec.model_validate({  # Adam's moments and step count, and a schedule over the global step, to restore
    "name": "resumed",
    "data": {"subset": 2000, "test_subset": 500, "validation_split": 0.1},
    "model": {"conv": [{"filters": 4}, {"filters": 8}], "dense": [16]},
    "train": {"optimizer": {"name": "adam", "lr": 0.003}, "batch_size": 32, "epochs": 3, "max_steps_per_epoch": 12,
              "schedule": "cosine", "warmup_epochs": 0.5},
})


class StopInEpochAfter(SilentProgress):
    """Ctrl-C between two steps of the epoch after `epoch`: that epoch's first steps ran, unsaved."""

    def __init__(self, epoch: int):
        self.epoch, self.passed = epoch, False

    def advance(self, steps: int) -> None:
        if self.passed:
            raise KeyboardInterrupt

    def epoch_done(self, record: EpochRecord) -> None:
        self.passed = record.epoch >= self.epoch


def _summary(backend: Any, result: RunResult) -> dict[str, Any]:
    return {"weights": backend.get_weights(result.model), "history": result.history,
            "test_accuracy": result.test_accuracy, "test_loss": result.test_loss,
            "resumed_from_epoch": result.resumed_from_epoch}


def stopped_and_resumed(name: str, mnist_dir: Path) -> dict[str, Any]:
    backend = backends.activate(name)
    spec, d = RESUMED, RESUMED.data
    data = prepare(load_dataset("mnist", mnist_dir, download=False), input_size=d.input_size,
                   normalization=d.normalization, validation_split=d.validation_split, subset=d.subset,
                   test_subset=d.test_subset)
    steps = spec.train.max_steps_per_epoch

    def train(progress: Any, checkpoint: Checkpoint | None = None) -> RunResult:
        return backend.train(backend.build(spec, 0, "cpu"), spec, data, 0, "cpu", progress, steps, checkpoint=checkpoint)

    found: dict[str, Any] = {"straight": _summary(backend, train(SilentProgress()))}
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Checkpoint(Path(tmp) / ".checkpoints" / "run")
        try:
            train(StopInEpochAfter(STOP_AFTER), checkpoint)
            found["stopped"] = False
        except KeyboardInterrupt:
            found["stopped"] = True
        found["saved_epoch"] = checkpoint.saved_epoch()
        found["files"] = sorted(p.name for p in checkpoint.folder.iterdir())
        found["resumed"] = _summary(backend, train(SilentProgress(), checkpoint))
        found["saved_epoch_after"] = checkpoint.saved_epoch()
    return found
