"""The spec schema: typed, immutable pydantic models of a LeNet variant and how it is trained.

Unknown keys are errors, every field is checked at load, and nothing here imports a
deep-learning framework.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from lenet_bench.spec import arch

DEVICES = ("cpu", "gpu")
NATIVE_SHAPES = {"mnist": (1, 28), "fashion_mnist": (1, 28), "cifar10": (3, 32)}
NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
SPEC_SUFFIXES = (".yaml", ".yml")


class _Strict(BaseModel):
    # Unknown keys are errors (a typo must never be silently ignored); specs are immutable.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ConvLayer(_Strict):
    filters: int = Field(gt=0)
    kernel: int = Field(5, gt=0)
    stride: int = Field(1, gt=0)
    padding: Literal["valid", "same"] = "valid"
    pool: Literal["max", "avg", "none"] | None = None  # None: the model's `pool`
    pool_size: int = Field(2, gt=0)

    @model_validator(mode="after")
    def _same_needs_unit_stride(self) -> ConvLayer:
        # PyTorch rejects padding="same" with stride > 1, so no backend could honour it.
        if self.padding == "same" and self.stride != 1:
            raise ValueError(f"padding 'same' needs stride 1; received stride {self.stride}")
        return self


class ModelSpec(_Strict):
    arch: str | None = Field(None, pattern=NAME_PATTERN, description="label for the architecture axis")
    conv: list[ConvLayer] = Field(default_factory=list)
    dense: list[int] = Field(default_factory=list)
    activation: Literal["relu", "sigmoid", "tanh"] = "relu"
    pool: Literal["max", "avg", "none"] = "max"
    in_channels: int = Field(1, gt=0)
    num_classes: int = Field(10, ge=2)
    init: Literal["glorot_uniform", "torch_default", "framework"] = "glorot_uniform"

    @field_validator("dense")
    @classmethod
    def _positive_units(cls, units: list[int]) -> list[int]:
        if any(u <= 0 for u in units):
            raise ValueError(f"dense units must be positive; received {units}")
        return units

    def pool_of(self, conv: ConvLayer) -> str:
        return conv.pool or self.pool

    @property
    def arch_label(self) -> str:
        return self.arch or "-".join(str(n) for n in [c.filters for c in self.conv] + self.dense)


class DataSpec(_Strict):
    dataset: Literal["mnist", "fashion_mnist", "cifar10"] = "mnist"
    input_size: Literal[28, 32] = 32
    normalization: Literal["unit", "standardize", "centered"] = "unit"
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    subset: int | None = Field(None, gt=0, description="use only the first N training images")
    test_subset: int | None = Field(None, gt=0, description="evaluate on the first N test images")


class OptimizerSpec(_Strict):
    """Both backends apply PyTorch's update formulas (eps after bias correction, momentum
    buffer without the learning rate, weight decay added to the gradient), so a spec means
    the same optimizer on either."""

    name: Literal["sgd", "adam"]
    lr: float | None = Field(None, gt=0)  # None: 0.01 for sgd, 0.001 for adam
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)  # L2 term added to the gradient (PyTorch's meaning)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    # Keras' default; PyTorch's is 1e-8. One value for both keeps the backends comparable.
    eps: float = Field(1e-7, gt=0)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else {"sgd": 0.01, "adam": 0.001}[self.name]

    @model_validator(mode="after")
    def _sgd_only_options(self) -> OptimizerSpec:
        if self.name != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(f"momentum and nesterov apply to sgd only; received optimizer {self.name!r}")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov needs momentum > 0")
        return self


class TrainSpec(_Strict):
    optimizer: OptimizerSpec = OptimizerSpec(name="adam")
    batch_size: int = Field(128, gt=0)
    epochs: int = Field(1, gt=0)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    schedule: Literal["constant", "cosine", "onecycle"] = "constant"
    warmup_epochs: float = Field(0.0, ge=0)
    max_steps_per_epoch: int | None = Field(None, gt=0, description="cap for quick runs")
    target_accuracy: float | None = Field(None, gt=0, le=1, description="validation accuracy whose time-to-reach is reported")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct; received {seeds}")
        if any(s < 0 for s in seeds):
            raise ValueError(f"seeds must be non-negative; received {seeds}")
        return seeds


class Expect(_Strict):
    min_test_accuracy: float = Field(0.95, ge=0, le=1)


class Reference(_Strict):
    test_accuracy: float = Field(gt=0, le=1)
    source: str = Field(min_length=1)
    url: str | None = None
    params: int | None = Field(None, gt=0, description="published parameter count, checked against ours")
    epochs: int | None = Field(None, gt=0)
    notes: str | None = None


class Spec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    data: DataSpec = DataSpec()
    model: ModelSpec
    train: TrainSpec = TrainSpec()
    backends: list[str] = Field(default_factory=lambda: ["torch"], min_length=1)
    devices: list[Literal["cpu", "gpu"]] = Field(default_factory=lambda: ["cpu"], min_length=1)
    expect: Expect = Expect()
    reference: Reference | None = None

    @field_validator("backends", "devices")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"entries must be distinct; received {values}")
        return values

    @field_validator("backends")
    @classmethod
    def _registered_backends(cls, names: list[str]) -> list[str]:
        from lenet_bench import backends  # the registry, which imports no framework

        unknown = [n for n in names if n not in backends.names()]
        if unknown:
            raise ValueError(f"unknown backend {unknown[0]!r}; expected one of: {', '.join(backends.names())}")
        return names

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.model.in_channels, self.data.input_size, self.data.input_size)

    def summary(self) -> arch.ArchSummary:
        return arch.describe(self.model, self.input_shape)

    def axes(self) -> dict[str, str]:
        """The design choices a user compares; the same keys for every variant."""
        paddings = sorted({c.padding for c in self.model.conv}) or ["none"]
        pools = sorted({self.model.pool_of(c) for c in self.model.conv} - {"none"}) or ["none"]
        return {
            "architecture": self.model.arch_label,
            "activation": self.model.activation,
            "pooling": "+".join(pools),
            "padding": "+".join(paddings),
            "input_size": str(self.data.input_size),
            "optimizer": self.train.optimizer.name,
            "dataset": self.data.dataset,
        }


