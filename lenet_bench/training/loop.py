"""What every backend shares about training: data order, learning-rate schedule, results.

Batch order and schedule live here, framework-free, so that two backends given the same
seed see the same mini-batches in the same order at the same learning rate.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from typing import Protocol

import numpy as np

from lenet_bench import stopping
from lenet_bench.spec.schema import OptimizerSpec, TrainSpec
from lenet_bench.training.augment import EpochImages
from lenet_bench.training.checkpoint import BackendState, Checkpoint, LoopState
from lenet_bench.training.result import EpochRecord, Progress


class Diverged(ArithmeticError):
    """The training loss became NaN or infinite: the run is a failure, never a result."""

    def __init__(self, epoch: int, loss: float):
        super().__init__(f"diverged: the training loss was {loss} in epoch {epoch} "
                         "(too high a learning rate, or an unstable setup)")
        self.epoch, self.loss = epoch, loss


class Clock(Protocol):
    def start(self) -> None: ...

    def read(self) -> float: ...


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, max_steps: int | None = None) -> list[np.ndarray]:
    """Index arrays of one shuffled epoch; the last batch may be short, as in Keras and PyTorch."""
    order = np.random.default_rng([seed, epoch, 0xBA7C4]).permutation(n)
    batches = [order[i:i + batch_size] for i in range(0, n, batch_size)]
    return batches[:max_steps] if max_steps else batches


def hessian_sample(n: int, size: int, seed: int, epoch: int) -> np.ndarray:
    """Indices of the training images sdlm estimates its Hessian on before `epoch` (the same on every backend)."""
    return np.sort(np.random.default_rng([seed, epoch, 0x4E55]).permutation(n)[:size])


def curvature_kept(optimizer: OptimizerSpec, epoch: int) -> float:
    """The share of the previous Hessian estimate sdlm keeps before `epoch`: 0 (a fresh mean) unless the spec
    asks for Appendix C's running average with gain G, whose old value after n images keeps (1 - G)^n (the
    mean of the n images stands for their sequence). Epoch 1 has nothing to keep; a resumed run keeps the
    estimate its checkpoint restored with the optimizer's state."""
    if optimizer.hessian_gamma is None or epoch <= 1:
        return 0.0
    return (1.0 - optimizer.hessian_gamma) ** optimizer.hessian_samples


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


def time_to_target(history: list[EpochRecord], target: float) -> tuple[float, int] | None:
    """(seconds, epoch) when validation accuracy first reached `target`, else None.

    As MLPerf counts time to train: every training step (warm-up included) and every evaluation up to
    the one that reached the target; not loading the data, building the model or the final test.
    Measured at epoch ends on the validation split, never the test set.
    """
    evaluations = 0.0
    for record in history:
        evaluations += record.eval_seconds
        if record.val_accuracy is not None and record.val_accuracy >= target:
            return record.elapsed + evaluations, record.epoch
    return None


def train_epochs(cfg: TrainSpec, n: int, seed: int, max_steps: int | None, clock: Clock, progress: Progress, *,
                 run_steps: Callable[[list[np.ndarray], list[float]], None],
                 take_sums: Callable[[], tuple[float, int]],
                 validate: Callable[[], tuple[float | None, float | None]],
                 warmup_steps: int, progress_every: int = 10,
                 before_epoch: Callable[[int], None] | None = None,
                 checkpoint: Checkpoint | None = None, state: BackendState | None = None,
                 distorted: EpochImages | None = None,
                 load_images: Callable[[np.ndarray], None] | None = None) -> LoopState:
    """The epoch loop both backends share: same batches, same learning rates, same clocks.

    `run_steps(batches, lrs)` takes one optimizer step per batch and accumulates the summed
    loss and hits on the device; `take_sums()` reads them once per epoch and resets them;
    `validate()` gives (loss, accuracy) on the validation split, after every `cfg.eval_every`-th
    epoch and the last (None in the other epochs' records); `before_epoch(epoch)`, if
    given, runs at the start of each epoch, on its clock. The clock is a Stopwatch
    that synchronizes the device before each reading. The first `warmup_steps` steps pay
    for allocation, kernel selection or tracing, and are timed apart.

    With a `checkpoint` (and the backend's `state`), every complete epoch is saved, off the
    clock, and a run that has one goes on after its last complete epoch: its history and
    timings so far restored, and the first steps of this process timed apart as warm-up too
    (they compile again).

    With `distorted` images (data.augment), each epoch starts by handing its images to `load_images`, on the
    epoch's clock; the seconds that takes (waiting for the warp, moving the images) are the record's
    `augment_seconds`.
    """
    with contextlib.ExitStack() as cleanup:
        if distorted is not None:
            cleanup.callback(distorted.close)  # its warp thread ends with the run, however it ends
        per_epoch = steps_per_epoch(n, cfg.batch_size, max_steps)
        total_steps = per_epoch * cfg.epochs
        warmup_lr_steps = round(cfg.warmup_epochs * per_epoch)
        progress.start(total_steps)
        saved = checkpoint.load(state, per_epoch) if checkpoint and state else None
        done = saved or LoopState(0, per_epoch, [], 0.0, 0)
        history = list(done.history)
        step, elapsed = per_epoch * done.epoch, history[-1].elapsed if history else 0.0
        warmup_seconds, warmup_images = done.warmup_seconds, done.warmup_images
        if step:
            progress.advance(step)
        for epoch in range(done.epoch + 1, cfg.epochs + 1):
            batches = epoch_batches(n, cfg.batch_size, seed, epoch, max_steps)
            if cfg.schedule == "piecewise":
                lrs = [cfg.epoch_learning_rate(epoch)] * len(batches)
            else:
                lrs = [learning_rate(cfg.schedule, cfg.optimizer.learning_rate, step + i, total_steps, warmup_lr_steps)
                       for i in range(len(batches))]
            first = warmup_steps if epoch == done.epoch + 1 else 0
            chunks = ([slice(0, first)] if first else []) + [
                slice(i, i + progress_every) for i in range(first, len(batches), progress_every)]
            clock.start()
            augment_seconds = 0.0
            if distorted is not None and load_images is not None:
                started = time.perf_counter()
                load_images(distorted.images(epoch, cfg.epochs))
                augment_seconds = time.perf_counter() - started
            if before_epoch:
                before_epoch(epoch)  # e.g. sdlm's Hessian estimate: part of training, so inside the epoch's time
            for chunk in chunks:
                stopping.check()  # Ctrl-C or SIGTERM: stop between steps, where nothing is half done
                run_steps(batches[chunk], lrs[chunk])
                if first and chunk.start == 0:
                    warmup_seconds += clock.read()
                    warmup_images += sum(len(b) for b in batches[chunk])
                progress.advance(len(batches[chunk]))
            seconds = clock.read()
            elapsed += seconds
            step += len(batches)
            images = sum(len(b) for b in batches)
            loss_sum, hits = take_sums()
            if not math.isfinite(loss_sum):
                raise Diverged(epoch, loss_sum / images)
            val_loss = val_accuracy = None
            eval_seconds = 0.0
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                clock.start()
                val_loss, val_accuracy = validate()
                eval_seconds = clock.read()
            record = EpochRecord(epoch, loss_sum / images, hits / images, val_loss, val_accuracy, seconds, images, elapsed,
                                 eval_seconds, augment_seconds)
            history.append(record)
            if checkpoint and state:
                checkpoint.save(LoopState(epoch, per_epoch, history, warmup_seconds, warmup_images, done.epoch),
                                state)
            progress.epoch_done(record)
        return LoopState(cfg.epochs, per_epoch, history, warmup_seconds, warmup_images, resumed_from_epoch=done.epoch)
