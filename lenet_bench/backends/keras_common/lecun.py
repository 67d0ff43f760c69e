"""Keras layers for the parts of LeCun et al. (1998)'s LeNet-5 that Keras has no layer for: the
scaled tanh, trainable subsampling, the partially connected convolution (C3) and the RBF output.

Written with `keras.ops` (NHWC), so they run on every Keras engine; registered as serializable so
that a saved model loads back. Their trainable arrays are stored in the canonical layout of the
layer description (`spec.arch`): no conversion between frameworks. Each weighted layer exposes
`linear(x, kernel, bias)`, its pre-activation with the given weights (sdlm's Hessian needs it).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from lenet_bench.spec import arch
from lenet_bench.spec.bitmaps import digit_bitmaps

PACKAGE = "lenet_bench"
# LeCun et al. (1998), Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3.
TANH_AMPLITUDE = 1.7159
TANH_SLOPE = 2.0 / 3.0


@keras.saving.register_keras_serializable(package=PACKAGE)
def scaled_tanh(x):
    return TANH_AMPLITUDE * ops.tanh(TANH_SLOPE * x)


def activation(name: str | None):
    """A Keras activation by the spec's name (None: linear)."""
    return scaled_tanh if name == "scaled_tanh" else name


@keras.saving.register_keras_serializable(package=PACKAGE)
class Subsample(keras.layers.Layer):
    """Each size x size block summed, times a per-map coefficient (`kernel`), plus a per-map `bias`,
    then the activation."""

    def __init__(self, size: int, activation: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.activation = keras.activations.get(activation)

    def build(self, input_shape) -> None:
        channels = input_shape[-1]
        self.kernel = self.add_weight(shape=(channels,), initializer="ones", name="kernel")
        self.bias = self.add_weight(shape=(channels,), initializer="zeros", name="bias")

    def linear(self, x, kernel, bias):
        sums = ops.average_pool(x, self.size, strides=self.size, padding="valid") * (self.size * self.size)
        return sums * kernel + bias

    def call(self, x):
        return self.activation(self.linear(x, self.kernel, self.bias))

    def get_config(self) -> dict:
        return {**super().get_config(), "size": self.size,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class PartialConv(keras.layers.Layer):
    """A convolution of which only the (output, input) map pairs listed in `connections` are
    trainable, the others fixed at zero. `kernel` holds one (kernel x kernel) array per pair, in the
    description's `pairs` order; a constant 0/1 matrix places them in the full NHWC kernel."""

    def __init__(self, filters: int, kernel_size: int, strides: int, padding: str,
                 connections: list[list[int]], activation: Any = None, **kwargs):
        super().__init__(**kwargs)
        self.filters, self.kernel_size, self.strides, self.padding = filters, kernel_size, strides, padding
        self.connections = [sorted(int(m) for m in maps) for maps in connections]
        self.activation = keras.activations.get(activation)
        self.pairs = [(out, inp) for out, maps in enumerate(self.connections) for inp in maps]

    def build(self, input_shape) -> None:
        self.in_maps = input_shape[-1]
        self.kernel = self.add_weight(shape=(len(self.pairs), self.kernel_size, self.kernel_size),
                                      initializer="glorot_uniform", name="kernel")
        self.bias = self.add_weight(shape=(self.filters,), initializer="zeros", name="bias")
        # Pair i fills column (in * filters + out) of the full kernel flattened (kh * kw, in * out).
        placement = np.zeros((len(self.pairs), self.in_maps * self.filters), np.float32)
        for index, (out, inp) in enumerate(self.pairs):
            placement[index, inp * self.filters + out] = 1.0
        self.placement = placement

    def full_kernel(self, kernel):
        """(kh, kw, in, out), zero outside the connected pairs."""
        per_pair = ops.transpose(ops.reshape(kernel, (len(self.pairs), -1)))  # (kh * kw, pairs)
        flat = ops.matmul(per_pair, ops.convert_to_tensor(self.placement))
        return ops.reshape(flat, (self.kernel_size, self.kernel_size, self.in_maps, self.filters))

    def linear(self, x, kernel, bias):
        return ops.conv(x, self.full_kernel(kernel), strides=self.strides, padding=self.padding) + bias

    def call(self, x):
        return self.activation(self.linear(x, self.kernel, self.bias))

    def compute_output_shape(self, input_shape):
        size = arch.conv_output_size(input_shape[1], self.kernel_size, self.strides, self.padding)
        return (input_shape[0], size, size, self.filters)

    def get_config(self) -> dict:
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding, "connections": self.connections,
                "activation": keras.activations.serialize(self.activation)}


@keras.saving.register_keras_serializable(package=PACKAGE)
class RBF(keras.layers.Layer):
    """Minus each class's penalty, the squared Euclidean distance of the input to the class's fixed
    +-1 bitmap (eq. 8 of the paper). The bitmaps are constants of the code, not weights."""

    def call(self, x):
        centers = ops.convert_to_tensor(digit_bitmaps())
        return -ops.sum(ops.square(ops.expand_dims(x, 1) - centers), axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], len(digit_bitmaps()))
