"""Keras models built from the layer description, in NHWC, and their weights in the canonical layout.

One Keras layer per layer of the description (`spec.arch`), activations inside the
convolution and dense layers, logits out. Keras is NHWC: inputs are moved to channels-last
once, and the first dense layer's input rows are permuted between the canonical (C, H, W)
flatten order and Keras' (H, W, C) one.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np

from lenet_bench.backends.keras_common import lecun
from lenet_bench.backends.keras_common.batch_norm import BatchNorm
from lenet_bench.backends.keras_common.optimizers import fit_optimizer
from lenet_bench.spec import arch
from lenet_bench.spec.schema import Spec
from lenet_bench.training.weights import initial_weights

_POOLS: dict[str, type[keras.layers.Layer]] = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}


def _conv(layer: arch.Conv) -> keras.layers.Layer:
    return keras.layers.Conv2D(layer.filters, layer.kernel, layer.stride, padding=layer.padding,
                               activation=lecun.activation(layer.activation), name=layer.name)


def _pool(layer: arch.Pool) -> keras.layers.Layer:
    return _POOLS[layer.mode](layer.size, layer.step, name=layer.name)


def _flatten(layer: arch.Flatten) -> keras.layers.Layer:
    return keras.layers.Flatten(name=layer.name)


def _dense(layer: arch.Dense) -> keras.layers.Layer:
    return keras.layers.Dense(layer.units, activation=lecun.activation(layer.activation), name=layer.name)


def _partial_conv(layer: arch.PartialConv) -> keras.layers.Layer:
    return lecun.PartialConv(layer.filters, layer.kernel, layer.stride, layer.padding,
                             [list(maps) for maps in layer.connections], lecun.activation(layer.activation),
                             name=layer.name)


def _subsample(layer: arch.Subsample) -> keras.layers.Layer:
    return lecun.Subsample(layer.size, lecun.activation(layer.activation), name=layer.name)


def _rbf(layer: arch.RBF) -> keras.layers.Layer:
    return lecun.RBF(name=layer.name)


def _activation(layer: arch.Activation) -> keras.layers.Layer:
    if layer.fn == "leaky_relu":
        return keras.layers.LeakyReLU(negative_slope=layer.slope, name=layer.name)
    return keras.layers.Activation(lecun.activation(layer.fn), name=layer.name)


def _dropout(layer: arch.Dropout) -> keras.layers.Layer:
    return keras.layers.Dropout(layer.rate, name=layer.name)


def _batch_norm(layer: arch.BatchNorm) -> keras.layers.Layer:
    # PyTorch's formulas and momentum (the spec's; Keras' own layer's momentum would be 1 - it): see batch_norm.py.
    return BatchNorm(layer.momentum, layer.epsilon, name=layer.name)


# One builder per layer type of the description.
_BUILDERS: dict[type[arch.Layer], Callable] = {arch.Conv: _conv, arch.Pool: _pool, arch.Flatten: _flatten,
                                               arch.Dense: _dense, arch.PartialConv: _partial_conv,
                                               arch.Subsample: _subsample, arch.RBF: _rbf,
                                               arch.Activation: _activation, arch.Dropout: _dropout,
                                               arch.BatchNorm: _batch_norm}
# Layers whose kernel is stored in the canonical layout already (no transposition).
_CANONICAL_LAYOUT = (lecun.Subsample, lecun.PartialConv)


def build_model(spec: Spec) -> keras.Sequential:
    """The spec's network, NHWC input, logits out, with Keras' default initialization."""
    channels, height, width = spec.input_shape
    layers: list[keras.layers.Layer] = [keras.Input((height, width, channels))]
    for layer in spec.summary().layers:
        builder = _BUILDERS.get(type(layer))
        if builder is None:
            raise NotImplementedError(f"the Keras backends cannot build a {layer.kind!r} layer ({layer.name})")
        layers.append(builder(layer))
    return keras.Sequential(layers, name=spec.model.arch_label)


def compiled_for_fit(spec: Spec) -> keras.Sequential:
    """The spec's model compiled as a tutorial would for `fit` (the bench's plain loop, on either engine)."""
    model = build_model(spec)
    model.compile(optimizer=fit_optimizer(spec),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def build(spec: Spec, seed: int, backend_name: str,
          set_random_seed: Callable[[int], None] = keras.utils.set_random_seed) -> keras.Sequential:
    set_random_seed(seed)  # only matters for init: framework
    model = build_model(spec)
    if spec.model.init != "framework":
        set_weights(model, initial_weights(spec.summary(), spec.model.init, seed))
    arch.check_params(backend_name, count_params(model), spec.summary())
    return model


def count_params(model: keras.Model) -> int:
    """Trainable parameters, as PyTorch counts them: a batch norm's running mean and variance are state."""
    return int(sum(np.prod(variable.shape) for variable in model.trainable_weights))


def _parametrized(model: keras.Model) -> list[tuple[keras.layers.Layer, bool]]:
    """The layers with trainable arrays, in order, each with whether it reads the flattened vector (it sits
    between the Flatten and the first Dense, that one included): Keras flattens (H, W, C), the canonical
    layout (C, H, W)."""
    found, reads_flattened = [], False
    for layer in model.layers:
        if isinstance(layer, keras.layers.Flatten):
            reads_flattened = True
        if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense, BatchNorm,
                              *_CANONICAL_LAYOUT)):
            found.append((layer, reads_flattened))
        if isinstance(layer, keras.layers.Dense):
            reads_flattened = False
    return found


def _flattened_map(model: keras.Model) -> tuple[int, int, int] | None:
    """(C, H, W) of the feature map that Flatten reads (None for a dense-only net: nothing to permute)."""
    flatten = next((layer for layer in model.layers if isinstance(layer, keras.layers.Flatten)), None)
    if flatten is None or len(flatten.input.shape) != 4:
        return None
    height, width, channels = flatten.input.shape[1:]
    return channels, height, width


def _arrays(layer: keras.layers.Layer) -> tuple[keras.Variable, keras.Variable]:
    """The layer's two trainable arrays in the canonical order: weight (kernel or scale), bias (or shift)."""
    if isinstance(layer, BatchNorm):
        return layer.gamma, layer.beta
    return layer.kernel, layer.bias


def _to_keras(weight: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    if weight.ndim == 1:  # a batch norm's scale or shift: per feature, in Keras' flatten order after a Flatten
        return weight if flattened is None else weight.reshape(flattened).transpose(1, 2, 0).reshape(-1)
    if flattened is None:
        return weight.T  # (out, in) -> (in, out)
    # A dense reading the flattened map: its input index runs over (C, H, W) canonically, over (H, W, C) in Keras.
    units = weight.shape[0]
    return weight.reshape(units, *flattened).transpose(2, 3, 1, 0).reshape(-1, units)


def _to_canonical(kernel: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    if kernel.ndim == 4:
        return kernel.transpose(3, 2, 0, 1)
    if flattened is None:
        return kernel if kernel.ndim == 1 else kernel.T
    channels, height, width = flattened
    if kernel.ndim == 1:  # a batch norm's scale or shift over the flattened features
        return kernel.reshape(height, width, channels).transpose(2, 0, 1).reshape(-1)
    units = kernel.shape[1]
    return kernel.reshape(height, width, channels, units).transpose(3, 2, 0, 1).reshape(units, -1)


def get_weights(model: keras.Model) -> list[np.ndarray]:
    flattened = _flattened_map(model)
    weights = []
    for layer, reads_flattened in _parametrized(model):
        kernel, bias = (np.asarray(array.numpy()) for array in _arrays(layer))
        if not isinstance(layer, _CANONICAL_LAYOUT):
            layout = flattened if reads_flattened else None
            kernel = _to_canonical(kernel, layout)
            # A dense layer's bias is per unit (no permutation); a batch norm's shift is per feature.
            bias = _to_canonical(bias, layout) if isinstance(layer, BatchNorm) else bias
        weights += [kernel.copy(), bias.copy()]
    return weights


def set_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    layers = _parametrized(model)
    if 2 * len(layers) != len(weights):
        raise ValueError(f"expected {2 * len(layers)} weight arrays, received {len(weights)}")
    flattened = _flattened_map(model)
    for i, (layer, reads_flattened) in enumerate(layers):
        kernel, bias = np.asarray(weights[2 * i], np.float32), np.asarray(weights[2 * i + 1], np.float32)
        if not isinstance(layer, _CANONICAL_LAYOUT):
            layout = flattened if reads_flattened else None
            kernel = _to_keras(kernel, layout)
            # A dense layer's bias is per unit (no permutation); a batch norm's shift is per feature.
            bias = _to_keras(bias, layout) if isinstance(layer, BatchNorm) else bias
        for variable, value in zip(_arrays(layer), (kernel, bias)):
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"weight shape mismatch in {layer.name}: expected {tuple(variable.shape)} "
                                 f"(Keras layout), received {value.shape} after conversion")
            variable.assign(value)


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC, contiguous (Keras' layout)."""
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW array with 4 dimensions; received shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def layer_outputs(model: keras.Model, x: np.ndarray) -> list[np.ndarray]:
    """Every layer's output, NCHW for feature maps (the canonical layout), (N, units) for dense layers."""
    # The one input tensor, not the list: called on a bare array, a list-input model warns on every call.
    probe = keras.Model(model.inputs[0], [layer.output for layer in model.layers])
    outputs = probe(to_channels_last(np.asarray(x, np.float32)), training=False)
    arrays = [np.asarray(keras.ops.convert_to_numpy(out)) for out in outputs]
    canonical = [a.transpose(0, 3, 1, 2).copy() if a.ndim == 4 else a for a in arrays]
    # Keras flattens in (H, W, C) order; the description's order is (C, H, W): flatten the NCHW map instead.
    for index, layer in enumerate(model.layers):
        if isinstance(layer, keras.layers.Flatten):
            flattened = canonical[index - 1] if index else np.asarray(x, np.float32)
            canonical[index] = flattened.reshape(len(flattened), -1)
    return canonical
