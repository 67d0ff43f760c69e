"""The bench's plain Keras loop: compile, then `fit` on NumPy arrays, one epoch per call."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from lenet_bench.backends import quiet_stderr
from lenet_bench.backends.keras.model import sync, tf_device
from lenet_bench.backends.keras_common.model import compiled_for_fit, to_channels_last
from lenet_bench.backends.protocol import ReferenceResult
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training.timing import time_calls, timed_epochs

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["matmul_flops", "reference_loop"]  # what the backend's package takes from here (the protocol's)


def reference_loop(spec: Spec, data: PreparedData, seed: int, device: Device, repeats: int) -> ReferenceResult:
    keras.utils.set_random_seed(seed)
    x, y = to_channels_last(data.x_train), data.y_train
    with tf.device(tf_device(device)):
        model = compiled_for_fit(spec)

        def epoch() -> None:
            model.fit(x, y, batch_size=spec.train.batch_size, epochs=1, shuffle=True, verbose=0)

        # fit's tf.data pipeline logs a harmless C++ error line per epoch with TensorFlow 2.21 and
        # Keras 3.15 ("NodeDef mentions attribute use_unbounded_threadpool"); Python errors still raise,
        # and LENET_BENCH_TF_VERBOSE=1 shows the lines.
        with quiet_stderr(os.environ.get("LENET_BENCH_TF_VERBOSE") != "1"):
            rates = timed_epochs(epoch, sync(device), len(x), repeats)
            _, accuracy = model.evaluate(to_channels_last(data.x_test), data.y_test, batch_size=1024, verbose=0)
    return ReferenceResult(rates, float(accuracy))


def matmul_flops(device: Device, size: int, repeats: int) -> float:
    with tf.device(tf_device(device)):
        a, b = (tf.random.normal((size, size)) for _ in range(2))
        seconds = time_calls(lambda: tf.linalg.matmul(a, b), sync(device), warmup=1, repeats=repeats)
    return 2 * size**3 / float(np.median(seconds))
