"""Initial weights drawn once per seed, independently of any framework.

Every backend loads these, so runs on different frameworks with the same seed start from
the same point. Layout is canonical (PyTorch's): conv weights (out, in, kh, kw), dense
weights (out, in), and the first dense layer reads a flattened (C, H, W) feature map. The
arrays and their order come from the layer description (`spec.arch`).
"""

from __future__ import annotations

import math

import numpy as np

from lenet_bench.spec.arch import ArchSummary

SCHEMES = ("glorot_uniform", "torch_default")


def initial_weights(summary: ArchSummary, scheme: str, seed: int) -> list[np.ndarray]:
    """Flat list [w0, b0, w1, b1, ...] of float32 arrays, one per trainable array of the description."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme; expected one of {SCHEMES}, received {scheme!r}")
    rng = np.random.default_rng([seed, 0x1E7E7])
    weights: list[np.ndarray] = []
    for layer in summary.layers:
        shapes = layer.weight_shapes
        if not shapes:
            continue
        w_shape, b_shape = shapes
        receptive = math.prod(w_shape[2:])
        fan_in, fan_out = w_shape[1] * receptive, w_shape[0] * receptive
        if scheme == "glorot_uniform":
            # Keras' default: U(-a, a), a = sqrt(6 / (fan_in + fan_out)); zero biases.
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            weights.append(rng.uniform(-limit, limit, w_shape).astype(np.float32))
            weights.append(np.zeros(b_shape, np.float32))
        else:
            # PyTorch's default (kaiming_uniform with a=sqrt(5)) reduces to U(-1/sqrt(fan_in), ..)
            # for weights and biases alike.
            bound = 1.0 / np.sqrt(fan_in)
            weights.append(rng.uniform(-bound, bound, w_shape).astype(np.float32))
            weights.append(rng.uniform(-bound, bound, b_shape).astype(np.float32))
    return weights
