"""Batch normalization on every Keras engine, computed as PyTorch computes it.

Keras' own layer takes the variance as E[x^2] - E[x]^2 and keeps the biased variance as its running variance;
PyTorch takes mean((x - mean)^2) and keeps the unbiased one. And TensorFlow's float32 mean over a batch's whole
feature map (50,000 values at batch 64, 28x28) is off by about 1e-5 (PyTorch's by 1e-8), which a narrow channel
(std 0.08 on MNIST's mostly-black maps) turns into 1e-3 after the normalization: five SGD steps then drift 5e-4
apart. This layer follows PyTorch's formulas and takes its means over each image first, then over the batch
(6e-7), so that the backends train and evaluate the same network (tests/test_parity.py).
"""

from __future__ import annotations

import math
from typing import Any

import keras
from keras import ops

from lenet_bench.backends.keras_common.lecun import PACKAGE


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNorm(keras.layers.Layer):
    """Over the last axis (channels, or a vector's units). `momentum` is PyTorch's: the weight of the new batch's
    statistics in the running ones. Training normalizes with the batch's mean and biased variance and updates the
    running mean and unbiased variance; inference normalizes with the running ones."""

    def __init__(self, momentum: float = 0.1, epsilon: float = 1e-5, **kwargs: Any):
        super().__init__(**kwargs)
        self.momentum, self.epsilon = momentum, epsilon

    def build(self, input_shape: tuple) -> None:
        features = (input_shape[-1],)
        self.gamma = self.add_weight(shape=features, initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=features, initializer="zeros", name="beta")
        self.moving_mean = self.add_weight(shape=features, initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(shape=features, initializer="ones", trainable=False,
                                               name="moving_variance")
        # Values per feature in one image (its map's height x width; 1 for a vector): the batch size multiplies it.
        self._per_image = math.prod(input_shape[1:-1])

    def call(self, x: Any, training: bool = False) -> Any:
        if training:
            mean = _feature_mean(x)
            variance = _feature_mean(ops.square(x - mean))
            count = ops.cast(ops.shape(x)[0] * self._per_image, x.dtype)
            unbiased = variance * count / ops.maximum(count - 1, 1)
            self.moving_mean.assign(self.moving_mean * (1 - self.momentum) + mean * self.momentum)
            self.moving_variance.assign(self.moving_variance * (1 - self.momentum) + unbiased * self.momentum)
        else:
            mean, variance = self.moving_mean, self.moving_variance
        return (x - mean) / ops.sqrt(variance + self.epsilon) * self.gamma + self.beta

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "momentum": self.momentum, "epsilon": self.epsilon}


def _feature_mean(x: Any) -> Any:
    """The mean per feature (last axis) over the batch and a map's positions: over each image's map first, then
    over the batch. Shorter sums keep float32 accurate (see the module docstring)."""
    spatial = tuple(range(1, len(x.shape) - 1))
    per_image = ops.mean(x, axis=spatial) if spatial else x
    return ops.mean(per_image, axis=0)
