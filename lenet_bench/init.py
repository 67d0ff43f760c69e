"""Initial weights drawn once per seed, independently of any framework.

Both backends load these, so a Keras run and a PyTorch run with the same seed start from
the same point. Layout is canonical (PyTorch's): conv weights (out, in, kh, kw), dense
weights (out, in), and the first dense layer reads a flattened (C, H, W) feature map.
"""

from __future__ import annotations

import numpy as np

from lenet_bench import arch

SCHEMES = ("glorot_uniform", "torch_default")


def layer_shapes(model, input_shape: tuple[int, int, int]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """(weight shape, bias shape) per trainable layer, in canonical layout."""
    summary = arch.describe(model, input_shape)
    shapes = []
    channels = input_shape[0]
    conv_layers = iter(model.conv)
    features = None
    for layer in summary.layers:
        if layer.kind == "conv":
            conv = next(conv_layers)
            shapes.append(((conv.filters, channels, conv.kernel, conv.kernel), (conv.filters,)))
            channels = conv.filters
        elif layer.kind in ("dense", "output"):
            units = layer.output_shape[0]
            shapes.append(((units, features), (units,)))
        features = int(np.prod(layer.output_shape))
    if not model.conv:
        # A pure dense model reads the flattened input.
        first_in = int(np.prod(input_shape))
        shapes[0] = ((shapes[0][0][0], first_in), shapes[0][1])
    return shapes


def initial_weights(model, input_shape: tuple[int, int, int], scheme: str, seed: int) -> list[np.ndarray]:
    """Flat list [w0, b0, w1, b1, ...] of float32 arrays."""
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme; expected one of {SCHEMES}, received {scheme!r}")
    rng = np.random.default_rng([seed, 0x1E7E7])
    weights: list[np.ndarray] = []
    for w_shape, b_shape in layer_shapes(model, input_shape):
        receptive = int(np.prod(w_shape[2:])) if len(w_shape) > 2 else 1
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
