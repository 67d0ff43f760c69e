"""What a backend hands back: per-epoch records and the run's result, as plain data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


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
    eval_seconds: float = 0.0  # this epoch's evaluation on the validation split (time to target counts it)
    augment_seconds: float = 0.0  # part of `seconds`: waiting for this epoch's distorted images and loading them


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
    resumed_from_epoch: int = 0  # trained on from a checkpoint of this epoch (after a stop); 0: from the start
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


