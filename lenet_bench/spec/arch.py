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

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from lenet_bench.spec.schema import ModelSpec

TRAINING_FLOPS_FACTOR = 3
RBF_INPUTS = 84  # 7x12 bitmaps (spec/bitmaps.py)
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

    @property
    def weight_shapes(self) -> tuple[Shape, ...]:
        return (self.input_shape[0],), (self.input_shape[0],)  # coefficients, biases

    @property
    def macs(self) -> int:
        return math.prod(self.output_shape)  # one multiply per unit; the sums are additions


@dataclass(frozen=True)
class Flatten(Layer):
    kind: ClassVar[str] = "flatten"


@dataclass(frozen=True)
class Dense(Layer):
    kind: ClassVar[str] = "dense"
    units: int
    activation: str | None  # None: the output layer's logits

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
        """A per-layer summary, as the published setups print it."""
        rows = [("layer", "output shape", "params", "MACs")]
        rows.append(("input", _shape(self.input_shape), "0", "0"))
        rows += [(layer.name, _shape(layer.output_shape), f"{layer.params:,}", f"{layer.macs:,}") for layer in self.layers]
        rows.append(("total", "", f"{self.params:,}", f"{self.macs:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths)))
                 for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(-1, "-" * len(lines[0]))
        return "\n".join(lines)


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


def pool_output_size(size: int, pool: int) -> int:
    # Both PyTorch and Keras floor by default (ceil_mode=False / padding="valid").
    return size // pool


def describe(model: ModelSpec, input_shape: tuple[int, int, int]) -> ArchSummary:
    """Walk the model spec layer by layer; raise ShapeError naming the first impossible layer."""
    shape: Shape = tuple(input_shape)
    layers: list[Layer] = []
    for i, conv in enumerate(model.conv):
        field = f"model.conv.{i}"
        channels, height, width = shape
        if conv.padding == "valid" and (conv.kernel > height or conv.kernel > width):
            raise ShapeError(
                f"{field}.kernel",
                f"kernel {conv.kernel}x{conv.kernel} is larger than its {height}x{width} input "
                f"(after the layers before it); expected a kernel of at most {min(height, width)}, "
                f"or padding: same",
            )
        out = (conv.filters, conv_output_size(height, conv.kernel, conv.stride, conv.padding),
               conv_output_size(width, conv.kernel, conv.stride, conv.padding))
        if conv.connections is None:
            layers.append(Conv(f"conv{i + 1}", shape, out, conv.filters, conv.kernel, conv.stride, conv.padding,
                               model.activation))
        else:
            if max(max(maps) for maps in conv.connections) >= channels:
                raise ShapeError(f"{field}.connections", f"connections name an input map beyond the {channels} "
                                 f"maps this layer reads; expected map numbers 0 to {channels - 1}")
            layers.append(PartialConv(f"conv{i + 1}", shape, out, conv.filters, conv.kernel, conv.stride,
                                      conv.padding, tuple(tuple(sorted(m)) for m in conv.connections),
                                      model.activation))
        shape = out
        pool = model.pool_of(conv)
        if pool != "none":
            _, height, width = shape
            if conv.pool_size > height or conv.pool_size > width:
                raise ShapeError(
                    f"{field}.pool_size",
                    f"{pool} pooling of {conv.pool_size}x{conv.pool_size} does not fit its {height}x{width} input; "
                    f"expected a pool of at most {min(height, width)}, or pool: none",
                )
            out = (shape[0], pool_output_size(height, conv.pool_size), pool_output_size(width, conv.pool_size))
            if pool == "subsample":
                layers.append(Subsample(f"subsample{i + 1}", shape, out, conv.pool_size, model.activation))
            else:
                layers.append(Pool(f"{pool}pool{i + 1}", shape, out, pool, conv.pool_size))
            shape = out
    features = (math.prod(shape),)
    layers.append(Flatten("flatten", shape, features))
    shape = features
    for i, units in enumerate(model.dense):
        layers.append(Dense(f"dense{i + 1}", shape, (units,), units, model.activation))
        shape = (units,)
    if model.output == "rbf":
        if shape != (RBF_INPUTS,) or model.num_classes != 10:
            raise ShapeError("model.output", f"the RBF output compares {RBF_INPUTS} inputs with the ten 7x12 "
                             f"digit bitmaps; expected a last dense layer of {RBF_INPUTS} units and 10 classes, "
                             f"received {shape[0]} inputs and {model.num_classes} classes")
        layers.append(RBF("output", shape, (model.num_classes,), model.num_classes))
    else:
        layers.append(Dense("output", shape, (model.num_classes,), model.num_classes, None))
    return ArchSummary(input_shape=tuple(input_shape), layers=tuple(layers))
