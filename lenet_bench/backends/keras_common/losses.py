"""The spec's training loss (`train.loss`) with `keras.ops`, and its curvature at the outputs for sdlm."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from keras import ops

from lenet_bench.spec.schema import LossSpec

Loss = Callable[[Any, Any], Any]


def _cross_entropy(out, y):
    return ops.mean(ops.sparse_categorical_crossentropy(y, out, from_logits=True))


def loss_function(loss: LossSpec) -> Loss:
    """(outputs, integer labels) -> the batch's mean loss; the same formulas as the PyTorch backend's."""
    if loss.name == "map":
        # LeCun et al. (1998), eq. (9), over outputs that are minus the RBF penalties: cross-entropy over
        # the outputs and one more, -j (see backends/torch/losses.py).
        j = float(loss.j or 0.0)
        return lambda out, y: _cross_entropy(ops.concatenate([out, ops.full((ops.shape(out)[0], 1), -j, out.dtype)], 1), y)
    if loss.name == "mse":
        off, on = loss.target_values
        return lambda out, y: ops.mean(0.5 * ops.sum(ops.square(
            out - (off + (on - off) * ops.one_hot(y, ops.shape(out)[1], dtype=out.dtype))), 1))
    return _cross_entropy


def output_curvature(loss: LossSpec, out):
    """Gauss-Newton second derivative of one image's loss with respect to each dense output: p(1 - p)
    for softmax cross-entropy, 1 for mse."""
    if loss.name == "mse":
        return ops.ones_like(out)
    p = ops.softmax(out, axis=1)
    return p * (1 - p)
