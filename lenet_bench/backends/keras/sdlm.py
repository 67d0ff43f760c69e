"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C) on Keras with TensorFlow:
the Gauss-Newton Hessian diagonal, and a trainer that runs many small steps per call.

The Hessian follows backends/torch/sdlm.py rule for rule (its docstring has the derivation): second
derivatives back-propagated with squared weights and squared activation slopes, as two
vector-Jacobian products of each layer's linear part, taken here with tf.GradientTape.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from lenet_bench.backends.keras_common import lecun
from lenet_bench.backends.keras_common.losses import Loss, output_curvature
from lenet_bench.spec.schema import LossSpec

RBF_PENALTY_CURVATURE = 2.0  # d2/dx_j^2 of sum_j (x_j - w_j)^2, as in the PyTorch backend


def _linear(layer: keras.layers.Layer, x, kernel, bias):
    """The layer's pre-activation with the given kernel and bias."""
    if isinstance(layer, (lecun.Subsample, lecun.PartialConv)):
        return layer.linear(x, kernel, bias)
    if isinstance(layer, keras.layers.Conv2D):
        return ops.conv(x, kernel, strides=layer.strides, padding=layer.padding) + bias
    if isinstance(layer, keras.layers.Dense):
        return ops.matmul(x, kernel) + bias
    raise NotImplementedError(f"sdlm cannot run second derivatives through {type(layer).__name__}")


def diagonal_hessian(model: keras.Model, x: tf.Tensor, loss: LossSpec) -> list[tf.Tensor]:
    """The mean over the images of `x` (NHWC) of the Gauss-Newton Hessian diagonal, one tensor per
    trainable variable, in `model.trainable_variables` order and Keras layout."""
    layers = model.layers
    inputs, h = [], x
    for layer in layers:
        inputs.append(h)
        h = layer(h)
    if isinstance(layers[-1], lecun.RBF):
        d2, last = tf.fill(tf.shape(inputs[-1]), RBF_PENALTY_CURVATURE), len(layers) - 2
    else:
        d2, last = None, len(layers) - 1
    curvature: dict[int, tf.Tensor] = {}
    count = tf.cast(tf.shape(x)[0], x.dtype)
    for index in range(last, -1, -1):
        layer, x_in = layers[index], inputs[index]
        if isinstance(layer, keras.layers.Flatten):
            d2 = tf.reshape(d2, tf.shape(x_in))
            continue
        kernel, bias = tf.convert_to_tensor(layer.kernel), tf.convert_to_tensor(layer.bias)
        a = _linear(layer, x_in, kernel, bias)
        with tf.GradientTape() as tape:
            tape.watch(a)
            out = layer.activation(a)
        slope = tape.gradient(out, a)  # f'(a), element by element
        # The output layer starts from the loss's curvature at the outputs (after a squashing activation, if any).
        d2a = (output_curvature(loss, out) if d2 is None else d2) * tf.square(slope)
        with tf.GradientTape() as tape:
            tape.watch([kernel, bias])
            total = tf.reduce_sum(_linear(layer, tf.square(x_in), kernel, bias) * d2a)
        h_kernel, h_bias = tape.gradient(total, [kernel, bias])
        curvature[id(layer.kernel)], curvature[id(layer.bias)] = h_kernel / count, h_bias / count
        if index > 0:
            with tf.GradientTape() as tape:
                tape.watch(x_in)
                total = tf.reduce_sum(_linear(layer, x_in, tf.square(kernel), bias) * d2a)
            d2 = tape.gradient(total, x_in)
    return [curvature[id(v)] for v in model.trainable_variables]


class StepLoop:
    """Steps of one optimizer, many per call: a tf.while_loop over a (steps, batch) block of indices,
    so a one-image step costs no Python (sdlm updates after every image, as the paper did)."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, x: tf.Tensor, y: tf.Tensor,
                 loss_fn: Loss):
        self.model, self.optimizer, self.x, self.y, self.loss_fn = model, optimizer, x, y, loss_fn
        self.loss_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.hits = tf.Variable(0, dtype=tf.int64, trainable=False)
        optimizer.build(model.trainable_variables)
        # The data go in as arguments, not as captures, which TensorFlow keeps after the run (train.Trainer).
        self.block = tf.function(self._block, reduce_retracing=True, input_signature=[
            tf.TensorSpec((None, *x.shape[1:]), x.dtype), tf.TensorSpec((None,), y.dtype),
            tf.TensorSpec((None, None), tf.int64), tf.TensorSpec((None,), tf.float32)])

    def _step(self, x: tf.Tensor, y: tf.Tensor, index: tf.Tensor, lr: tf.Tensor) -> None:
        xb, yb = tf.gather(x, index), tf.gather(y, index)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.model(xb, training=True)
            loss = self.loss_fn(out, yb)
        grads = tape.gradient(loss, variables)
        self.optimizer.learning_rate.assign(lr)
        self.optimizer.apply(grads, variables)
        self.loss_sum.assign_add(loss * tf.cast(tf.shape(index)[0], tf.float32))
        self.hits.assign_add(tf.reduce_sum(tf.cast(tf.argmax(out, axis=1) == yb, tf.int64)))

    def _block(self, x: tf.Tensor, y: tf.Tensor, indices: tf.Tensor, lrs: tf.Tensor) -> None:
        def body(i):
            self._step(x, y, indices[i], lrs[i])
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(indices)[0], body, (tf.constant(0),))

    def run(self, batches: list[np.ndarray], lrs: list[float]) -> None:
        # One block per run of equal-sized batches (an epoch's last batch may be short).
        start = 0
        while start < len(batches):
            end = start
            while end < len(batches) and len(batches[end]) == len(batches[start]):
                end += 1
            self.block(self.x, self.y, tf.constant(np.stack(batches[start:end]), tf.int64),
                       tf.constant(lrs[start:end], tf.float32))
            start = end

    def take_sums(self) -> tuple[float, int]:
        values = float(self.loss_sum.numpy()), int(self.hits.numpy())
        self.loss_sum.assign(0.0)
        self.hits.assign(0)
        return values
