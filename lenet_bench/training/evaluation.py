"""The end of every backend's training run: test evaluation and inference timings, done once here.

A backend hands in how to evaluate and predict on its own device tensors; this module
times them with the same synchronized clocks and assembles the `RunResult`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from lenet_bench.training import timing
from lenet_bench.training.checkpoint import LoopState
from lenet_bench.training.result import RunResult


def finish_run(*, backend: str, device: str, framework_version: str, params: int, loop: LoopState,
               evaluate_test: Callable[[], tuple[float, float, np.ndarray]],
               predict_batch: Callable[[Any], object], x_test: Any, sync: Callable[[], None],
               data_seconds: float, model: object, device_memory: Callable[[], dict[str, float]] = dict) -> RunResult:
    """Evaluate on the test split, time inference, and return the run's plain result.

    `evaluate_test()` gives (loss, accuracy, predictions as a NumPy array); `predict_batch`
    runs the model on a slice of `x_test` (device tensors); `device_memory()` gives the
    backend's accelerator peak, if any.
    """
    clock = timing.Stopwatch(sync)
    clock.start()
    test_loss, test_accuracy, predictions = evaluate_test()
    eval_seconds = clock.read()
    timings = timing.inference_timings(predict_batch, sync, x_test)
    timings.update(device_memory())
    return RunResult(
        backend=backend, device=device, framework_version=framework_version, params=params,
        test_loss=test_loss, test_accuracy=test_accuracy, test_predictions=np.asarray(predictions),
        data_seconds=data_seconds, eval_seconds=eval_seconds, timings=timings, model=model,
        resumed_from_epoch=loop.resumed_from_epoch, **loop.timing_fields(),
    )
