"""The layer description: a framework-free, ordered list of a model's layers.

`describe(model, input_shape)` walks a model spec once and returns every layer with its
input and output shapes, its trainable arrays (canonical layout, PyTorch's), parameters and
multiply-accumulates. Initial weights, every backend's builder, the summaries and the
diagrams read this description; none of them walks the spec again. A new kind of layer is
one dataclass here plus one builder per backend.

FLOPs are 2 x multiply-accumulates of the layers that multiply (convolutions, dense,
trainable subsampling, RBF distances); activations, pooling and bias adds are left out. A training step costs about
3x the forward FLOPs (forward, and backward for inputs and weights).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from lenet_bench.spec.layers import TEMPLATE_ACTIVATIONS

if TYPE_CHECKING:
    from lenet_bench.spec.layers import (
        ActivationSpec,
        BatchNormSpec,
        ConvSpec,
        DenseSpec,
        DropoutSpec,
        FlattenSpec,
        LayerSpec,
        PoolSpec,
        RBFSpec,
    )
    from lenet_bench.spec.schema import ModelSpec

TRAINING_FLOPS_FACTOR = 3
RBF_INPUTS = 84  # 7x12 bitmaps (spec/bitmaps.py)
# The activations an output layer may carry: they squash its outputs into a range that targets (loss mse) sit in.
SQUASHING = ("tanh", "scaled_tanh", "sigmoid")
Shape = tuple[int, ...]


class ShapeError(ValueError):
    """A layer cannot be applied to its input; `field` is the dotted spec path to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Layer:
    """One layer: its name, shapes and trainable arrays; subclasses add what builds it."""

    kind: ClassVar[str]
    name: str
    input_shape: Shape
    output_shape: Shape

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        """Trainable arrays in canonical order and layout (PyTorch's)."""
        return ()

    @property
    def params(self) -> int:
        return sum(math.prod(shape) for shape in self.weight_shapes)

    @property
    def macs(self) -> int:
        return 0


@dataclass(frozen=True)
class Conv(Layer):
    kind: ClassVar[str] = "conv"
    filters: int
    kernel: int
    stride: int
    padding: str  # valid | same
    activation: str | None
    init: str | None = field(default=None, repr=False)  # None: the model's

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (self.filters, self.input_shape[0], self.kernel, self.kernel), (self.filters,)

    @property
    def macs(self) -> int:
        _, height, width = self.output_shape
        return self.filters * self.input_shape[0] * self.kernel * self.kernel * height * width


@dataclass(frozen=True)
class Pool(Layer):
    kind: ClassVar[str] = "pool"
    mode: str  # max | avg
    size: int
    stride: int | None = None  # None: the size (non-overlapping windows)

    @property
    def step(self) -> int:
        return self.stride or self.size


@dataclass(frozen=True)
class PartialConv(Layer):
    """A convolution whose output maps each read only some input maps: LeNet-5's C3 (LeCun et al.
    1998, Table I). Its kernel is one (kernel x kernel) array per (output, input) pair it connects,
    in `pairs` order (output map, then input map, ascending)."""

    kind: ClassVar[str] = "partial_conv"
    filters: int
    kernel: int
    stride: int
    padding: str  # valid | same
    connections: tuple[tuple[int, ...], ...]  # per output map, the input maps it reads
    activation: str | None
    init: str | None = field(default=None, repr=False)

    @property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        return tuple((out, inp) for out, maps in enumerate(self.connections) for inp in sorted(maps))

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (len(self.pairs), self.kernel, self.kernel), (self.filters,)

    @property
    def macs(self) -> int:
        _, height, width = self.output_shape
        return len(self.pairs) * self.kernel * self.kernel * height * width


@dataclass(frozen=True)
class Subsample(Layer):
    """LeCun et al. (1998)'s trainable subsampling (S2, S4): each size x size block summed, times a
    trainable coefficient, plus a trainable bias, one of each per map, then the activation."""

    kind: ClassVar[str] = "subsample"
    size: int
    activation: str | None
    init: str | None = field(default=None, repr=False)

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (self.input_shape[0],), (self.input_shape[0],)  # coefficients, biases

    @property
    def macs(self) -> int:
        return math.prod(self.output_shape)  # one multiply per unit; the sums are additions


@dataclass(frozen=True)
class Activation(Layer):
    """An activation of its own: one that follows a layer other than a convolution, subsampling or dense layer
    (e.g. batch norm), or one of the functions those layers do not carry (gelu, elu, silu, leaky_relu)."""

    kind: ClassVar[str] = "activation"
    fn: str
    slope: float | None = None  # leaky_relu's negative slope


@dataclass(frozen=True)
class Dropout(Layer):
    kind: ClassVar[str] = "dropout"
    rate: float


@dataclass(frozen=True)
class BatchNorm(Layer):
    """Batch normalization of a feature map's channels (or a vector's units): a trainable scale and shift
    (the canonical weight and bias), and running mean and variance (state, not trained)."""

    kind: ClassVar[str] = "batch_norm"
    momentum: float  # PyTorch's convention: the weight of the new batch's statistics
    epsilon: float

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (self.input_shape[0],), (self.input_shape[0],)  # scale (gamma), shift (beta)


@dataclass(frozen=True)
class Flatten(Layer):
    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Dense(Layer):
    kind: ClassVar[str] = "dense"
    units: int
    activation: str | None  # None: the output layer's logits
    init: str | None = field(default=None, repr=False)

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (self.units, self.input_shape[0]), (self.units,)

    @property
    def macs(self) -> int:
        return self.units * self.input_shape[0]


@dataclass(frozen=True)
class RBF(Layer):
    """LeCun et al. (1998)'s output: one Euclidean RBF unit per class, its penalty the squared
    distance of the input to a fixed +-1 parameter vector (spec/bitmaps.py). No trainable
    array; the layer outputs minus the penalties, so that the largest output is the class."""

    kind: ClassVar[str] = "rbf"
    units: int

    @property
    def macs(self) -> int:
        return self.units * self.input_shape[0]


@dataclass(frozen=True)
class ArchSummary:
    input_shape: Shape
    layers: tuple[Layer, ...]

    @property
    def params(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def flops(self) -> int:
        """Forward FLOPs per image."""
        return 2 * self.macs

    @property
    def train_flops(self) -> int:
        """Approximate FLOPs per training image (forward + backward)."""
        return TRAINING_FLOPS_FACTOR * self.flops

    @property
    def weight_shapes(self) -> list[Shape]:
        """Every trainable array of the model, in order: the canonical weight list."""
        return [shape for layer in self.layers for shape in layer.weight_shapes]

    @property
    def flattened_shape(self) -> Shape:
        """(C, H, W) of the map the first dense layer reads flattened (the input for a dense-only model)."""
        flatten = next((layer for layer in self.layers if isinstance(layer, Flatten)), None)
        return flatten.input_shape if flatten else self.input_shape

    def table(self) -> str:
        """A per-layer summary, as Keras' summary() prints one: name, type (and the activation it carries),
        output shape, parameters, multiply-accumulates."""
        rows = [("layer", "type", "output shape", "params", "MACs")]
        rows.append(("input", "", _shape(self.input_shape), "0", "0"))
        rows += [(layer.name, layer_type(layer), _shape(layer.output_shape), f"{layer.params:,}", f"{layer.macs:,}")
                 for layer in self.layers]
        rows.append(("total", "", "", f"{self.params:,}", f"{self.macs:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = ["  ".join(cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(-1, "-" * len(lines[0]))
        return "\n".join(lines)


def layer_type(layer: Layer) -> str:
    """The layer's kind, with what it carries: 'conv+relu', 'activation leaky_relu(0.1)', 'dropout 0.25'."""
    if isinstance(layer, Activation):
        return f"activation {layer.fn}" + (f"({layer.slope:g})" if layer.slope is not None else "")
    if isinstance(layer, Dropout):
        return f"dropout {layer.rate:g}"
    if isinstance(layer, Pool):
        return f"{layer.mode} pool" + (f" stride {layer.stride}" if layer.stride else "")
    activation = getattr(layer, "activation", None)
    return layer.kind + (f"+{activation}" if activation else "")


def check_params(framework: str, counted: int, summary: ArchSummary) -> None:
    """A backend's own parameter count must equal the analytic one; a mismatch is a bug, never a variant."""
    if counted != summary.params:
        raise AssertionError(f"{framework} model has {counted:,} parameters, the analytic count is {summary.params:,}")


def _shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


def conv_output_size(size: int, kernel: int, stride: int, padding: str) -> int:
    if padding == "same":
        return -(-size // stride)
    return (size - kernel) // stride + 1 if size >= kernel else 0


def pool_output_size(size: int, pool: int, stride: int | None = None) -> int:
    # Both PyTorch and Keras floor by default (ceil_mode=False / padding="valid").
    return (size - pool) // (stride or pool) + 1 if size >= pool else 0


# Layers that carry the activation that directly follows them (the template's conv -> activation, as
# Keras' Conv2D(activation=...) does), so that a list and its template give one description.
_CARRIES_ACTIVATION = ("conv", "partial_conv", "subsample", "dense")


class _Walk:
    """The state of one walk down a layer list: the shape so far, the layers described, their names."""

    def __init__(self, input_shape: Shape, model: ModelSpec):
        self.shape: Shape = tuple(input_shape)
        self.layers: list[Layer] = []
        self.model = model
        self.counts: dict[str, int] = {}

    def name(self, written: str | None, stem: str) -> str:
        if written:
            return written
        self.counts[stem] = self.counts.get(stem, 0) + 1
        return f"{stem}{self.counts[stem]}"

    def add(self, layer: Layer) -> None:
        self.layers.append(layer)
        self.shape = layer.output_shape


def _where(index: int, spec: LayerSpec) -> str:
    return f"layer {index}" + (f" ({spec.name!r}, {spec.type})" if spec.name else f" ({spec.type})")


def _feature_map(walk: _Walk, field: str, where: str) -> tuple[int, int, int]:
    if len(walk.shape) != 3:
        raise ShapeError(field, f"{where} needs a feature map (channels x height x width); it reads a vector of "
                                f"{walk.shape[0]} after a flatten or dense layer: put it before the flatten")
    channels, height, width = walk.shape
    return channels, height, width


def _conv(walk: _Walk, spec: ConvSpec, field: str, where: str) -> None:
    channels, height, width = _feature_map(walk, field, where)
    if spec.padding == "valid" and (spec.kernel > height or spec.kernel > width):
        raise ShapeError(f"{field}.kernel",
                         f"{where}: kernel {spec.kernel}x{spec.kernel} is larger than its {height}x{width} input "
                         f"(after the layers before it); expected a kernel of at most {min(height, width)}, "
                         "or padding: same")
    out = (spec.filters, conv_output_size(height, spec.kernel, spec.stride, spec.padding),
           conv_output_size(width, spec.kernel, spec.stride, spec.padding))
    if spec.connections is None:
        walk.add(Conv(walk.name(spec.name, "conv"), walk.shape, out, spec.filters, spec.kernel, spec.stride,
                      spec.padding, None, spec.init))
        return
    if max(max(maps) for maps in spec.connections) >= channels:
        raise ShapeError(f"{field}.connections", f"{where}: connections name an input map beyond the {channels} "
                                                 f"maps this layer reads; expected map numbers 0 to {channels - 1}")
    walk.add(PartialConv(walk.name(spec.name, "conv"), walk.shape, out, spec.filters, spec.kernel, spec.stride,
                         spec.padding, tuple(tuple(sorted(m)) for m in spec.connections), None, spec.init))


def _pool(walk: _Walk, spec: PoolSpec, field: str, where: str) -> None:
    channels, height, width = _feature_map(walk, field, where)
    if spec.size > height or spec.size > width:
        raise ShapeError(f"{field}.size", f"{where}: {spec.kind} pooling of {spec.size}x{spec.size} does not fit its "
                                          f"{height}x{width} input; expected a pool of at most {min(height, width)}")
    stride = spec.stride or spec.size
    out = (channels, pool_output_size(height, spec.size, stride), pool_output_size(width, spec.size, stride))
    if spec.kind == "subsample":
        walk.add(Subsample(walk.name(spec.name, "subsample"), walk.shape, out, spec.size, None, spec.init))
    else:
        walk.add(Pool(walk.name(spec.name, f"{spec.kind}pool"), walk.shape, out, spec.kind, spec.size,
                      None if stride == spec.size else stride))


def _activation(walk: _Walk, spec: ActivationSpec, field: str, where: str) -> None:
    last = walk.layers[-1] if walk.layers else None
    if (last is not None and last.kind in _CARRIES_ACTIVATION and getattr(last, "activation", None) is None
            and spec.fn in TEMPLATE_ACTIVATIONS and not spec.name):
        walk.layers[-1] = dataclasses.replace(last, activation=spec.fn)  # type: ignore[call-arg]
        return
    walk.add(Activation(walk.name(spec.name, spec.fn), walk.shape, walk.shape, spec.fn, spec.slope))


def _dropout(walk: _Walk, spec: DropoutSpec, field: str, where: str) -> None:
    walk.add(Dropout(walk.name(spec.name, "dropout"), walk.shape, walk.shape, spec.rate))


def _batch_norm(walk: _Walk, spec: BatchNormSpec, field: str, where: str) -> None:
    walk.add(BatchNorm(walk.name(spec.name, "batch_norm"), walk.shape, walk.shape, spec.momentum, spec.epsilon))


def _flatten(walk: _Walk, spec: FlattenSpec, field: str, where: str) -> None:
    _feature_map(walk, field, where)
    walk.add(Flatten(spec.name or "flatten", walk.shape, (math.prod(walk.shape),)))


def _vector(walk: _Walk, field: str, where: str) -> int:
    if len(walk.shape) != 1:
        raise ShapeError(field, f"{where} reads a vector, and receives a {_shape(walk.shape)} feature map: "
                                "expected a flatten layer before it")
    return walk.shape[0]


def _dense(walk: _Walk, spec: DenseSpec, field: str, where: str) -> None:
    _vector(walk, field, where)
    walk.add(Dense(walk.name(spec.name, "dense"), walk.shape, (spec.units,), spec.units, None, spec.init))


def _rbf(walk: _Walk, spec: RBFSpec, field: str, where: str) -> None:
    inputs = _vector(walk, field, where)
    classes = walk.model.num_classes
    if inputs != RBF_INPUTS or classes != 10:
        raise ShapeError(field, f"{where}: the RBF output compares {RBF_INPUTS} inputs with the ten 7x12 digit "
                                f"bitmaps; expected a last dense layer of {RBF_INPUTS} units and 10 classes, "
                                f"received {inputs} inputs and {classes} classes")
    walk.add(RBF(spec.name or "output", walk.shape, (classes,), classes))


_DESCRIBERS: dict[str, Callable[[_Walk, Any, str, str], None]] = {
    "conv": _conv, "pool": _pool, "activation": _activation, "dropout": _dropout, "batch_norm": _batch_norm,
    "flatten": _flatten, "dense": _dense, "rbf": _rbf}


def describe(model: ModelSpec, input_shape: tuple[int, int, int]) -> ArchSummary:
    """Walk the model's layers once; raise ShapeError naming the first impossible layer (its index, name and shapes)."""
    enabled = model.enabled_layers()
    if not enabled:
        raise ShapeError("model.layers", "every layer is disabled; expected at least the output layer")
    template = model.layers is None
    walk = _Walk(input_shape, model)
    convs = 0
    for position, (index, spec) in enumerate(enabled):
        last = position == len(enabled) - 1
        convs += spec.type == "conv"
        where = _where(index, spec)
        field = f"model.layers.{index}"
        if template:  # the template names its own fields (model.conv.2.kernel, model.conv.2.pool_size)
            where = f"the output layer ({spec.type})" if last else f"{spec.name} ({spec.type})"
            field = "model.output" if last else f"model.conv.{convs - 1}" if spec.type in ("conv", "pool") else "model"
        if spec.type == "rbf" and not last:
            raise ShapeError(field, f"{where}: the rbf output must be the last layer")
        try:
            _DESCRIBERS[spec.type](walk, spec, field, where)
        except ShapeError as err:
            if template and err.field.endswith(".size"):
                raise ShapeError(err.field.removesuffix(".size") + ".pool_size", err.message) from None
            raise
    _check_output(walk, enabled[-1], template)
    return ArchSummary(input_shape=tuple(input_shape), layers=tuple(walk.layers))


def _check_output(walk: _Walk, last: tuple[int, LayerSpec], template: bool) -> None:
    index, spec = last
    output = walk.layers[-1]
    classes = walk.model.num_classes
    field = "model.output" if template else f"model.layers.{index}"
    if not isinstance(output, (Dense, RBF)) or output.output_shape != (classes,):
        raise ShapeError(field, f"the last layer is the output: expected a dense layer of {classes} units "
                                f"(num_classes) or rbf; received {_where(index, spec)} with output "
                                f"{_shape(output.output_shape)}")
    if isinstance(output, Dense) and output.activation not in (None, *SQUASHING):
        raise ShapeError(field, f"the output layer gives logits: expected no activation after it, or a squashing one "
                                f"({', '.join(SQUASHING)}) trained with loss mse; received {output.activation}")
    if not spec.name and isinstance(output, Dense):
        walk.layers[-1] = dataclasses.replace(output, name="output")


def sdlm_refusal(summary: ArchSummary) -> str | None:
    """Why sdlm cannot train this network (its Hessian runs through weighted layers and their activations), or None."""
    for layer in summary.layers:
        if layer.kind not in (*_CARRIES_ACTIVATION, "flatten", "rbf"):
            hint = " (use pool subsample or none)" if layer.kind == "pool" else ""
            return (f"sdlm's Hessian runs through convolutions, subsampling, dense and RBF layers and the activations "
                    f"they carry; received layer {layer.name!r} ({layer.kind}){hint}")
    return None
