"""The model as a list of typed layers (`model.layers:`), and the template form (`conv:`, `dense:`, one
`activation`, one `pool`) written as that list.

Each layer type is one pydantic class, told apart by its `type` key. `spec.arch.describe` turns the list
into the layer description every backend builds from; a new layer type is one class here, one description
class there, and one builder per backend.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, ValidationInfo, field_validator, model_validator

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
MAX_FILTERS = 4096
MAX_KERNEL = 64  # also stride and pool size: twice the largest image (32x32); the shape checks say more below it
MAX_UNITS = 16_384

# The template's activations, which a convolution, subsampling or dense layer carries inside it.
TEMPLATE_ACTIVATIONS = ("relu", "sigmoid", "tanh", "scaled_tanh")
# Every activation has the same definition in PyTorch and Keras: gelu exact (erf), elu with alpha 1, silu = x sigmoid(x),
# leaky_relu with the slope the spec gives (the frameworks' defaults differ: 0.01 and 0.2).
ACTIVATIONS = (*TEMPLATE_ACTIVATIONS, "gelu", "elu", "silu", "leaky_relu")
POOL_KINDS = ("max", "avg", "subsample")


def _wants_number(annotation: Any) -> bool:
    """int or float, alone or in a union or list (bool is neither here)."""
    return annotation in (int, float) or any(_wants_number(a) for a in get_args(annotation))


def _holds_bool(value: Any) -> bool:
    return isinstance(value, bool) or (isinstance(value, list) and any(_holds_bool(v) for v in value))


class Strict(BaseModel):
    # Unknown keys are errors (a typo must never be silently ignored); specs are immutable;
    # NaN and infinity are never a setting.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        # YAML reads `true` as a bool and pydantic would take it as 1: a number must be written as one.
        if info.field_name and _wants_number(cls.model_fields[info.field_name].annotation) and _holds_bool(value):
            raise ValueError(f"expected a number, not a boolean (true/false); received {value!r:.80}")
        return value


class _Layer(Strict):
    name: str | None = Field(None, pattern=NAME_PATTERN, max_length=40, description="for matrices and the layer table")
    # false leaves the layer out: a matrix level that inserts or removes it (batch norm on/off).
    enabled: bool = True


class ConvFields(Strict):
    """A convolution's own fields, in the template's `conv:` entries and in a `conv` layer alike."""

    filters: int = Field(gt=0, le=MAX_FILTERS)
    kernel: int = Field(5, gt=0, le=MAX_KERNEL)
    stride: int = Field(1, gt=0, le=MAX_KERNEL)
    padding: Literal["valid", "same"] = "valid"
    # Per output map, the input maps it reads (None: all of them), as LeNet-5's C3 (1998, Table I).
    connections: list[list[int]] | None = None

    @model_validator(mode="after")
    def _same_needs_unit_stride(self) -> ConvFields:
        # PyTorch rejects padding="same" with stride > 1, so no backend could honour it.
        if self.padding == "same" and self.stride != 1:
            raise ValueError(f"padding 'same' needs stride 1; received stride {self.stride}")
        return self

    @model_validator(mode="after")
    def _one_input_list_per_map(self) -> ConvFields:
        if self.connections is None:
            return self
        if len(self.connections) != self.filters:
            raise ValueError(f"connections needs one list of input maps per filter ({self.filters}); "
                             f"received {len(self.connections)}")
        for maps in self.connections:
            if not maps or len(set(maps)) != len(maps) or min(maps) < 0:
                raise ValueError(f"each entry of connections must list distinct input maps (0-based); received {maps}")
        return self


Init = Literal["glorot_uniform", "torch_default", "lecun_uniform", "lecun_uniform_sqrt"]


class ConvSpec(_Layer, ConvFields):
    type: Literal["conv"] = "conv"
    init: Init | None = None  # None: the model's


class PoolSpec(_Layer):
    """max, avg, or LeCun et al. (1998)'s trainable subsampling (each size x size sum times a trainable
    coefficient, plus a trainable bias, per map)."""

    type: Literal["pool"] = "pool"
    kind: Literal["max", "avg", "subsample"] = "max"
    size: int = Field(2, gt=0, le=MAX_KERNEL)
    stride: int | None = Field(None, gt=0, le=MAX_KERNEL, description="None: the size (non-overlapping)")
    init: Init | None = None  # subsample only

    @model_validator(mode="after")
    def _subsampling_tiles(self) -> PoolSpec:
        if self.kind == "subsample" and self.stride not in (None, self.size):
            raise ValueError(f"subsample sums non-overlapping size x size blocks: expected stride {self.size} "
                             f"(or none), received {self.stride}")
        if self.kind != "subsample" and self.init is not None:
            raise ValueError(f"only subsample pooling has weights to initialize; received init for {self.kind} pooling")
        return self


class ActivationSpec(_Layer):
    type: Literal["activation"] = "activation"
    fn: Literal["relu", "sigmoid", "tanh", "scaled_tanh", "gelu", "elu", "silu", "leaky_relu"]
    slope: float | None = Field(None, gt=0, lt=1, description="leaky_relu only: the negative slope")

    @model_validator(mode="after")
    def _slope_for_leaky_relu(self) -> ActivationSpec:
        if (self.fn == "leaky_relu") != (self.slope is not None):
            raise ValueError("leaky_relu needs its negative slope (PyTorch's default is 0.01, Keras' 0.2), and only "
                             f"leaky_relu takes one; received fn {self.fn!r}, slope {self.slope}")
        return self


class DropoutSpec(_Layer):
    type: Literal["dropout"] = "dropout"
    rate: float = Field(ge=0, lt=1, description="fraction of inputs zeroed in training")


class BatchNormSpec(_Layer):
    """Batch normalization over the channels of a feature map, or the units of a vector. `momentum` is
    PyTorch's (the weight of the new batch's statistics in the running ones); Keras gets 1 - momentum."""

    type: Literal["batch_norm"] = "batch_norm"
    momentum: float = Field(0.1, gt=0, lt=1)
    epsilon: float = Field(1e-5, gt=0, le=1)


class FlattenSpec(_Layer):
    type: Literal["flatten"] = "flatten"


class DenseSpec(_Layer):
    type: Literal["dense"] = "dense"
    units: int = Field(gt=0, le=MAX_UNITS)
    init: Init | None = None  # None: the model's


class RBFSpec(_Layer):
    """LeCun et al. (1998)'s output: one Euclidean RBF unit per class with fixed +-1 parameter vectors (the
    7x12 digit bitmaps of lenet_bench/spec/bitmaps.py); its output is minus the squared distance."""

    type: Literal["rbf"] = "rbf"


def _layer_type(value: Any) -> str | None:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


# Told apart by `type` (a callable discriminator: the field-wide checks above run on every field, `type` too).
LayerSpec = Annotated[Annotated[ConvSpec, Tag("conv")] | Annotated[PoolSpec, Tag("pool")]
                      | Annotated[ActivationSpec, Tag("activation")] | Annotated[DropoutSpec, Tag("dropout")]
                      | Annotated[BatchNormSpec, Tag("batch_norm")] | Annotated[FlattenSpec, Tag("flatten")]
                      | Annotated[DenseSpec, Tag("dense")] | Annotated[RBFSpec, Tag("rbf")],
                      Discriminator(_layer_type, custom_error_type="layer_type",
                                    custom_error_message="expected a layer with a type: one of conv, pool, activation, "
                                                         "dropout, batch_norm, flatten, dense, rbf")]
LAYER_TYPES = ("conv", "pool", "activation", "dropout", "batch_norm", "flatten", "dense", "rbf")


def template_layers(model: Any) -> list[LayerSpec]:
    """The template form (conv, dense, activation, pool, output) as its list of layers, named as the
    description has always named them (conv1, maxpool1, subsample1, flatten, dense1, output)."""
    fn = model.activation
    layers: list[LayerSpec] = []
    for i, conv in enumerate(model.conv):
        layers.append(ConvSpec(name=f"conv{i + 1}", filters=conv.filters, kernel=conv.kernel, stride=conv.stride,
                               padding=conv.padding, connections=conv.connections))
        layers.append(ActivationSpec(fn=fn))
        pool = model.pool_of(conv)
        if pool == "subsample":
            layers += [PoolSpec(name=f"subsample{i + 1}", kind="subsample", size=conv.pool_size),
                       ActivationSpec(fn=fn)]
        elif pool != "none":
            layers.append(PoolSpec(name=f"{pool}pool{i + 1}", kind=pool, size=conv.pool_size))
    layers.append(FlattenSpec(name="flatten"))
    for i, units in enumerate(model.dense):
        layers += [DenseSpec(name=f"dense{i + 1}", units=units), ActivationSpec(fn=fn)]
    layers.append(RBFSpec(name="output") if model.output == "rbf" else DenseSpec(name="output",
                                                                                   units=model.num_classes))
    if model.output == "squashed":
        layers.append(ActivationSpec(fn=fn))
    return layers
