"""Initial weights drawn once per seed, independently of any framework.

Every backend loads these, so runs on different frameworks with the same seed start from
the same point. Layout is canonical (PyTorch's): conv weights (out, in, kh, kw), dense
weights (out, in), and the first dense layer reads a flattened (C, H, W) feature map. The
arrays and their order come from the layer description (`spec.arch`).

lecun_uniform_sqrt is the same with sqrt(F) for F: weighted sums of unit variance, Appendix A's stated aim (sums
"in the normal operating region of the sigmoid") and Efficient BackProp's rule (standard deviation F^-1/2); read as
printed, 2.4/F leaves LeNet-5's sums far below it, and the paper's own learning rates diverge from there
(scripts/sdlm_diagnosis.py).

lecun_uniform is LeCun et al. (1998), Appendix A: every weight and bias of a unit uniform in
(-2.4/F, 2.4/F), F the unit's fan-in (its incoming connections, the bias left out): 25 for C1,
75, 100 or 150 for C3's maps (3, 4 or 6 input maps, Table I), 4 for a 2x2 subsampling unit.
"""

from __future__ import annotations

import math

import numpy as np

from lenet_bench.spec import arch
from lenet_bench.spec.arch import ArchSummary

SCHEMES = ("glorot_uniform", "torch_default", "lecun_uniform", "lecun_uniform_sqrt")
LECUN_SCALE = 2.4  # LeCun et al. (1998), Appendix A


def initial_weights(summary: ArchSummary, model_scheme: str, seed: int) -> list[np.ndarray]:
    """Flat list [w0, b0, w1, b1, ...] of float32 arrays, one per trainable array of the description; a layer's
    own `init` wins over the model's `model_scheme`."""
    if model_scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme; expected one of {SCHEMES}, received {model_scheme!r}")
    rng = np.random.default_rng([seed, 0x1E7E7])
    weights: list[np.ndarray] = []
    for layer in summary.layers:
        shapes = layer.weight_shapes
        if not shapes:
            continue
        w_shape, b_shape = shapes
        if isinstance(layer, arch.BatchNorm):
            # Both frameworks start batch norm as the identity: scale 1, shift 0 (no draw: the layers around keep theirs).
            weights += [np.ones(w_shape, np.float32), np.zeros(b_shape, np.float32)]
            continue
        scheme = getattr(layer, "init", None) or model_scheme
        if scheme in ("lecun_uniform", "lecun_uniform_sqrt"):
            w_fan_in, b_fan_in = _unit_fan_ins(layer)
            if scheme == "lecun_uniform_sqrt":
                w_fan_in, b_fan_in = np.sqrt(w_fan_in), np.sqrt(b_fan_in)
            weights.append((rng.uniform(-1, 1, w_shape) * LECUN_SCALE / w_fan_in).astype(np.float32))
            weights.append((rng.uniform(-1, 1, b_shape) * LECUN_SCALE / b_fan_in).astype(np.float32))
            continue
        fan_in, fan_out = _fans(layer)
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


def _fans(layer: arch.Layer) -> tuple[int, int]:
    """(fan_in, fan_out) of a layer's weight; a partial convolution counts as the full one it masks."""
    if isinstance(layer, arch.Subsample):
        return layer.size * layer.size, 1
    if isinstance(layer, arch.PartialConv):
        receptive = layer.kernel * layer.kernel
        return layer.input_shape[0] * receptive, layer.filters * receptive
    w_shape = layer.weight_shapes[0]
    receptive = math.prod(w_shape[2:])
    return w_shape[1] * receptive, w_shape[0] * receptive


def _unit_fan_ins(layer: arch.Layer) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Each weight's and each bias's unit fan-in, broadcastable to the arrays' shapes."""
    if isinstance(layer, arch.PartialConv):
        per_map = np.array([len(maps) * layer.kernel * layer.kernel for maps in layer.connections], np.float64)
        return per_map[[out for out, _ in layer.pairs]].reshape(-1, 1, 1), per_map
    fan_in = float(_fans(layer)[0])
    return fan_in, fan_in
