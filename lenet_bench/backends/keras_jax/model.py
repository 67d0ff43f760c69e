"""Keras on JAX: models (built by keras_common) placed on the run's device, and jitted inference.

The model's variables hold JAX arrays; inference is `model.stateless_call` under `jax.jit`, so
the training loop can run the same function on its own (not yet written back) variable values.
"""

from __future__ import annotations

import random
import weakref
from collections.abc import Callable
from typing import Any

import jax
import keras
import numpy as np
from jax import numpy as jnp

from lenet_bench.backends.keras_common import model as common
from lenet_bench.backends.keras_common.model import count_params, get_weights, layer_outputs, set_weights
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec

__all__ = ["NAME", "build", "count_params", "get_weights", "layer_outputs", "predict_logits", "set_weights"]  # the protocol's part here

NAME = "keras-jax"
# Images per jitted forward pass when evaluating: on one CPU core LeNet-5 runs 12,000 img/s at 512
# against 9,900 at 2048 (the 20/50/500 LeNet alike at both).
EVAL_BATCH = 512


ModelState = tuple[list[jax.Array], list[jax.Array]]  # values of the trainable and non-trainable variables


def jax_device(device: Device) -> jax.Device:
    return jax.devices(Device(device).value)[0]


class DeviceSync:
    """JAX dispatches asynchronously, on the CPU too: a clock reads after the arrays last computed are ready."""

    def __init__(self) -> None:
        self._pending: Any = None

    def track(self, value: Any) -> Any:
        """Remember `value` (any pytree of arrays) as the latest work; returns it unchanged."""
        self._pending = value
        return value

    def __call__(self) -> None:
        if self._pending is not None:
            jax.block_until_ready(self._pending)


def set_random_seed(seed: int) -> None:
    """What keras.utils.set_random_seed seeds that matters on JAX: Python's generator, from which Keras'
    initializers draw their seeds, and NumPy's, which shuffles `fit`'s data. Keras' own function also
    seeds TensorFlow, importing it when installed: a second framework in this process (seconds, and
    memory that the run's peak RSS would count) for nothing."""
    random.seed(seed)
    np.random.seed(seed)


def build(spec: Spec, seed: int, device: Device) -> keras.Sequential:
    with jax.default_device(jax_device(device)):
        return common.build(spec, seed, NAME, set_random_seed)


def model_state(model: keras.Model) -> ModelState:
    return [v.value for v in model.trainable_variables], [v.value for v in model.non_trainable_variables]


# One jitted forward pass per model; weak keys so a dropped model frees it (the function holds a weak reference).
_FORWARD_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward_fn(model: keras.Model) -> Callable[..., jax.Array]:
    if model not in _FORWARD_FNS:
        ref = weakref.ref(model)

        def forward(trainable: list[jax.Array], non_trainable: list[jax.Array], x: jax.Array) -> jax.Array:
            traced = ref()
            assert traced is not None, "traced after its model was freed"  # the entry goes with the model
            outputs, _ = traced.stateless_call(trainable, non_trainable, x, training=False)
            return outputs

        _FORWARD_FNS[model] = jax.jit(forward)
    return _FORWARD_FNS[model]


def logits(model: keras.Model, x: jax.Array, state: ModelState | None = None) -> jax.Array:
    """The model's logits for NHWC `x`, from `state` (default: the model's own variables), EVAL_BATCH at a time."""
    trainable, non_trainable = state if state is not None else model_state(model)
    forward = _forward_fn(model)
    if len(x) <= EVAL_BATCH:
        return forward(trainable, non_trainable, x)  # no slicing or concatenation: they dominate batch-1 latency
    return jnp.concatenate([forward(trainable, non_trainable, x[i:i + EVAL_BATCH])
                            for i in range(0, len(x), EVAL_BATCH)])


def predict_logits(model: keras.Model, x: np.ndarray, device: Device = Device.CPU) -> np.ndarray:
    images = jax.device_put(common.to_channels_last(np.asarray(x, np.float32)), jax_device(device))
    return np.asarray(logits(model, images))
