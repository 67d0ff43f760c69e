"""Framework-free architecture arithmetic: output shapes, parameter counts, FLOPs.

Nothing here imports a deep-learning framework, so `list` and `validate` stay fast and
the backends' own parameter counts can be checked against an independent source.
FLOPs are counted as 2 x multiply-accumulates of the conv and dense layers (the usual
convention); activations, pooling and bias adds are left out. A training step costs
about 3x the forward FLOPs (forward, and backward for inputs and weights).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lenet_bench.spec import ModelSpec

TRAINING_FLOPS_FACTOR = 3


class ShapeError(ValueError):
    """A layer cannot be applied to its input; `field` is the dotted spec path to blame."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class LayerInfo:
    name: str
    kind: str  # conv | pool | flatten | dense | output
    output_shape: tuple[int, ...]  # (C, H, W) for feature maps, (units,) after flatten
    params: int
    macs: int


@dataclass(frozen=True)
class ArchSummary:
    input_shape: tuple[int, int, int]
    layers: tuple[LayerInfo, ...]

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

    def table(self) -> str:
        """A per-layer summary, as the published setups print it."""
        rows = [("layer", "output shape", "params", "MACs")]
        rows.append(("input", _shape(self.input_shape), "0", "0"))
        rows += [(l.name, _shape(l.output_shape), f"{l.params:,}", f"{l.macs:,}") for l in self.layers]
        rows.append(("total", "", f"{self.params:,}", f"{self.macs:,}"))
        widths = [max(len(row[i]) for row in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.insert(-1, "-" * len(lines[0]))
        return "\n".join(lines)


def check_params(framework: str, counted: int, summary: ArchSummary) -> None:
    """A backend's own parameter count must equal the analytic one; a mismatch is a bug, never a variant."""
    if counted != summary.params:
        raise AssertionError(f"{framework} model has {counted:,} parameters, the analytic count is {summary.params:,}")


def _shape(shape: tuple[int, ...]) -> str:
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
    channels, height, width = input_shape
    layers: list[LayerInfo] = []
    for i, conv in enumerate(model.conv):
        field = f"model.conv.{i}"
        if conv.padding == "valid" and (conv.kernel > height or conv.kernel > width):
            raise ShapeError(
                f"{field}.kernel",
                f"kernel {conv.kernel}x{conv.kernel} is larger than its {height}x{width} input "
                f"(after the layers before it); expected a kernel of at most {min(height, width)}, "
                f"or padding: same",
            )
        height = conv_output_size(height, conv.kernel, conv.stride, conv.padding)
        width = conv_output_size(width, conv.kernel, conv.stride, conv.padding)
        weights = conv.filters * channels * conv.kernel * conv.kernel
        layers.append(LayerInfo(f"conv{i + 1}", "conv", (conv.filters, height, width), weights + conv.filters, weights * height * width))
        channels = conv.filters
        pool = model.pool_of(conv)
        if pool != "none":
            if conv.pool_size > height or conv.pool_size > width:
                raise ShapeError(
                    f"{field}.pool_size",
                    f"{pool} pooling of {conv.pool_size}x{conv.pool_size} does not fit its {height}x{width} input; "
                    f"expected a pool of at most {min(height, width)}, or pool: none",
                )
            height = pool_output_size(height, conv.pool_size)
            width = pool_output_size(width, conv.pool_size)
            layers.append(LayerInfo(f"{pool}pool{i + 1}", "pool", (channels, height, width), 0, 0))
    features = channels * height * width
    if model.conv:
        layers.append(LayerInfo("flatten", "flatten", (features,), 0, 0))
    for i, units in enumerate(model.dense):
        macs = features * units
        layers.append(LayerInfo(f"dense{i + 1}", "dense", (units,), macs + units, macs))
        features = units
    macs = features * model.num_classes
    layers.append(LayerInfo("output", "output", (model.num_classes,), macs + model.num_classes, macs))
    return ArchSummary(input_shape=tuple(input_shape), layers=tuple(layers))
