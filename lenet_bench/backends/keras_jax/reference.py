"""The bench's plain Keras loop on JAX: compile, then `fit` on NumPy arrays, one epoch per call.

Keras compiles fit's step with `jax.jit` itself (jit_compile="auto" means XLA on JAX).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import numpy as np
from jax import numpy as jnp

from lenet_bench.backends.keras_common.model import compiled_for_fit, to_channels_last
from lenet_bench.backends.keras_jax.model import DeviceSync, jax_device, set_random_seed
from lenet_bench.backends.protocol import ReferenceResult
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training.timing import time_calls, timed_epochs

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["matmul_flops", "reference_loop"]  # what the backend's package takes from here (the protocol's)


def reference_loop(spec: Spec, data: PreparedData, seed: int, device: Device, repeats: int) -> ReferenceResult:
    set_random_seed(seed)  # fit shuffles with NumPy's generator
    x, y = to_channels_last(data.x_train), data.y_train
    sync = DeviceSync()
    with jax.default_device(jax_device(device)):
        model = compiled_for_fit(spec)

        def epoch() -> None:
            model.fit(x, y, batch_size=spec.train.batch_size, epochs=1, shuffle=True, verbose=0)
            sync.track([v.value for v in model.trainable_variables])  # fit writes its state back at the epoch's end

        rates = timed_epochs(epoch, sync, len(x), repeats)
        _, accuracy = model.evaluate(to_channels_last(data.x_test), data.y_test, batch_size=1024, verbose=0)
    return ReferenceResult(rates, float(accuracy))


def matmul_flops(device: Device, size: int, repeats: int) -> float:
    sync = DeviceSync()
    matmul = jax.jit(jnp.matmul)
    with jax.default_device(jax_device(device)):
        a, b = jax.random.normal(jax.random.key(0), (2, size, size), jnp.float32)
        seconds = time_calls(lambda: sync.track(matmul(a, b)), sync, warmup=1, repeats=repeats)
    return 2 * size**3 / float(np.median(seconds))
