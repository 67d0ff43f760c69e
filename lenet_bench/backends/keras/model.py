"""Keras on TensorFlow: models (built by keras_common) placed on the run's device, and compiled inference."""

from __future__ import annotations

import weakref
from collections.abc import Callable

import keras
import numpy as np
import tensorflow as tf

from lenet_bench.backends.keras_common import model as common
from lenet_bench.backends.keras_common.model import count_params, get_weights, layer_outputs, set_weights
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec

__all__ = ["NAME", "build", "count_params", "get_weights", "layer_outputs", "predict_logits", "set_weights"]  # the protocol's part here

NAME = "keras"
EVAL_BATCH = 2048


def tf_device(device: Device) -> str:
    return "/GPU:0" if device == Device.GPU else "/CPU:0"


def sync(device: Device) -> Callable[[], None]:
    # Eager GPU ops return once queued; CPU ops have finished when they return.
    return tf.test.experimental.sync_devices if device == Device.GPU else (lambda: None)


def build(spec: Spec, seed: int, device: Device) -> keras.Sequential:
    with tf.device(tf_device(device)):
        return common.build(spec, seed, NAME)


# One compiled inference function per model; weak keys so a dropped model frees it, and the function
# reaches its model through a weak reference too (a strong one from the value would keep the key alive).
_PREDICT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_fn(model: keras.Model):
    if model not in _PREDICT_FNS:
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        model_ref = weakref.ref(model)

        def predict(x: tf.Tensor) -> tf.Tensor:
            traced = model_ref()
            assert traced is not None, "traced after its model was freed"  # the entry goes with the model
            return traced(x, training=False)

        _PREDICT_FNS[model] = tf.function(predict, input_signature=signature, reduce_retracing=True)
    return _PREDICT_FNS[model]


def logits(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    predict = _predict_fn(model)
    if len(x) <= EVAL_BATCH:
        return predict(x)  # no slicing or concatenation: they dominate batch-1 latency
    return tf.concat([predict(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)], axis=0)


def predict_logits(model: keras.Model, x: np.ndarray, device: Device = Device.CPU) -> np.ndarray:
    with tf.device(tf_device(device)):
        return logits(model, tf.constant(common.to_channels_last(np.asarray(x, np.float32)))).numpy()
