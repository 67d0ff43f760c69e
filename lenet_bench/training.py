"""What every backend shares about training: data order, learning-rate schedule, results.

Batch order and schedule live here, framework-free, so that two backends given the same
seed see the same mini-batches in the same order at the same learning rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, max_steps: int | None = None) -> list[np.ndarray]:
    """Index arrays of one shuffled epoch; the last batch may be short, as in Keras and PyTorch."""
    order = np.random.default_rng([seed, epoch, 0xBA7C4]).permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:max_steps] if max_steps else batches


def steps_per_epoch(n: int, batch_size: int, max_steps: int | None = None) -> int:
    steps = math.ceil(n / batch_size)
    return min(steps, max_steps) if max_steps else steps


def learning_rate(schedule: str, base_lr: float, step: int, total_steps: int, warmup_steps: int = 0) -> float:
    """Learning rate for a 0-based optimizer step."""
    if warmup_steps and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if schedule == "constant":
        return base_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    if schedule == "cosine":
        return base_lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    if schedule == "onecycle":
        # Linear warm-up is handled above; then linear decay to zero, the cheapest
        # schedule that still anneals (Smith & Topin's one-cycle, simplified).
        return base_lr * max(0.0, 1.0 - progress)
    raise ValueError(f"unknown schedule; expected constant, cosine or onecycle, received {schedule!r}")


@dataclass
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    seconds: float  # training time of this epoch, device synchronized, evaluation excluded
    images: int
    elapsed: float = 0.0  # training seconds since the start, for time-to-target


@dataclass
class RunResult:
    """What a backend hands back to the runner: plain data, no framework objects but `model`."""

    backend: str
    device: str
    framework_version: str
    params: int
    history: list[EpochRecord]
    test_loss: float
    test_accuracy: float
    test_predictions: np.ndarray  # predicted class per test image
    warmup_seconds: float  # first steps (allocation, tracing, compilation), kept apart
    warmup_images: int
    steady_seconds: float  # training time after warm-up
    steady_images: int
    data_seconds: float  # moving data into the framework / onto the device
    eval_seconds: float
    timings: dict[str, float] = field(default_factory=dict)  # inference throughput, latency, memory
    model: object = None  # the trained framework model, for saving

    @property
    def train_images_per_second(self) -> float:
        return self.steady_images / self.steady_seconds if self.steady_seconds > 0 else float("nan")


class Progress(Protocol):
    """What a backend reports while it trains; the runner draws it."""

    def start(self, total_steps: int) -> None: ...

    def advance(self, steps: int) -> None: ...

    def epoch_done(self, record: EpochRecord) -> None: ...


class SilentProgress:
    def start(self, total_steps: int) -> None:
        pass

    def advance(self, steps: int) -> None:
        pass

    def epoch_done(self, record: EpochRecord) -> None:
        pass


def time_to_target(history: list[EpochRecord], target: float) -> tuple[float, int] | None:
    """(training seconds, epoch) when validation accuracy first reached `target`, else None.

    Measured at epoch ends on the validation split, never the test set.
    """
    for record in history:
        if record.val_accuracy is not None and record.val_accuracy >= target:
            return record.elapsed, record.epoch
    return None
