"""The spec schema: typed, immutable pydantic models of a LeNet variant and how it is trained.

Unknown keys are errors, every field is checked at load, and nothing here imports a
deep-learning framework.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from lenet_bench import backend_registry
from lenet_bench.data import registry
from lenet_bench.device import Device
from lenet_bench.spec import arch, layers
from lenet_bench.spec.layers import MAX_KERNEL, MAX_UNITS, LayerSpec
from lenet_bench.spec.layers import Strict as _Strict

NAME_PATTERN = r"^[a-z0-9][a-z0-9_.-]*$"
SPEC_SUFFIXES = (".yaml", ".yml")

# Upper bounds on what one run may ask for: far above any LeNet, far below what would hang a
# machine. The model as a whole (parameters, FLOPs, layers) is bounded in loading.py.
MAX_EPOCHS = 1000
MAX_BATCH_SIZE = 65_536
MAX_STEPS_PER_EPOCH = 100_000
MAX_LAYERS = 100
MAX_SEEDS = 100
MAX_SEED = 2**31 - 1  # every framework's seed setter takes it


class ConvLayer(layers.ConvFields):
    """A convolution of the template form, followed by the model's pooling unless it says otherwise."""

    # subsample: LeCun et al. (1998)'s trainable subsampling (each pool_size x pool_size sum times
    # a trainable coefficient, plus a trainable bias, per map, then the activation).
    pool: Literal["max", "avg", "subsample", "none"] | None = None  # None: the model's `pool`
    pool_size: int = Field(2, gt=0, le=MAX_KERNEL)


class ModelSpec(_Strict):
    """A network, written either as `layers:` (an ordered list of typed layers, the last one the output) or
    in the template form: `conv:` (each convolution followed by the model's `pool`), `dense:` (widths), one
    `activation` and an `output`. The template is shorthand for its list of layers (spec/layers.py)."""

    arch: str | None = Field(None, pattern=NAME_PATTERN, description="label for the architecture axis")
    layers: list[LayerSpec] | None = Field(None, min_length=1, max_length=MAX_LAYERS)
    conv: list[ConvLayer] = Field(default_factory=list)
    dense: list[int] = Field(default_factory=list)
    # scaled_tanh: LeCun et al. (1998), Appendix A: f(a) = 1.7159 tanh(2a/3).
    activation: Literal["relu", "sigmoid", "tanh", "scaled_tanh"] = "relu"
    pool: Literal["max", "avg", "subsample", "none"] = "max"
    in_channels: int = Field(1, gt=0)
    num_classes: int = Field(10, ge=2)
    # lecun_uniform: U(-2.4/F, 2.4/F), F the fan-in of the unit (1998, Appendix A); a layer's own `init` wins.
    # lecun_uniform_sqrt: U(-2.4/sqrt(F), 2.4/sqrt(F)) (training/weights.py says why).
    init: Literal["glorot_uniform", "torch_default", "lecun_uniform", "lecun_uniform_sqrt", "framework"] = "glorot_uniform"
    # rbf: 1998's output, one Euclidean RBF unit per class with fixed +-1 parameter vectors (the
    # 7x12 digit bitmaps of lenet_bench/spec/bitmaps.py); its output is minus the squared distance.
    # squashed: a dense layer and the model's activation after it (a squashing one: tanh, scaled_tanh, sigmoid), the
    # output units of the networks before 1998 (LeCun et al. 1989, 1990), trained on squared error to targets in range.
    output: Literal["dense", "rbf", "squashed"] = "dense"

    @field_validator("dense")
    @classmethod
    def _positive_units(cls, units: list[int]) -> list[int]:
        if any(u <= 0 or u > MAX_UNITS for u in units):
            raise ValueError(f"dense units must be between 1 and {MAX_UNITS}; received {units}")
        return units

    @model_validator(mode="after")
    def _one_form(self) -> ModelSpec:
        # Compared with their defaults, not with what was written: a saved spec (model_dump) writes every field,
        # and must read back as the same spec.
        template = sorted(name for name in TEMPLATE_FIELDS
                          if getattr(self, name) != type(self).model_fields[name].get_default(call_default_factory=True))
        if self.layers is not None and template:
            raise ValueError(f"write the model either as layers or in the template form, not both; received layers "
                             f"and {', '.join(template)} (in the layers form, each activation, pooling and the output "
                             "are layers of their own)")
        return self

    @model_validator(mode="after")
    def _distinct_layer_names(self) -> ModelSpec:
        names = [layer.name for layer in self.layers or () if layer.name]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"layer names must be distinct (a matrix addresses a layer by its name); "
                             f"received {', '.join(repr(name) for name in repeated)} more than once")
        return self

    def pool_of(self, conv: ConvLayer) -> str:
        return conv.pool or self.pool

    def layer_list(self) -> list[LayerSpec]:
        """Every layer in order, disabled ones included: the written list, or the template's expansion."""
        return list(self.layers) if self.layers is not None else layers.template_layers(self)

    def enabled_layers(self) -> list[tuple[int, LayerSpec]]:
        """(index in the list, layer) of the layers the network has."""
        return [(index, layer) for index, layer in enumerate(self.layer_list()) if layer.enabled]

    @property
    def arch_label(self) -> str:
        if self.arch:
            return self.arch
        if self.layers is None:
            return "-".join(str(n) for n in [c.filters for c in self.conv] + self.dense)
        enabled = [layer for _, layer in self.enabled_layers()]
        widths = [layer.filters if isinstance(layer, layers.ConvSpec) else layer.units for layer in enabled[:-1]
                  if isinstance(layer, (layers.ConvSpec, layers.DenseSpec))]
        return "-".join(str(n) for n in widths) or "linear"

    @property
    def activations(self) -> list[str]:
        """The activation functions the network uses, in order of first use."""
        if self.layers is None:
            return [self.activation]
        fns = [layer.fn for _, layer in self.enabled_layers() if isinstance(layer, layers.ActivationSpec)]
        return list(dict.fromkeys(fns))

    @property
    def has_rbf_output(self) -> bool:
        enabled = self.enabled_layers()
        return bool(enabled) and isinstance(enabled[-1][1], layers.RBFSpec)

    @property
    def has_squashed_output(self) -> bool:
        """A squashing activation after the output layer (another one is refused by the shapes: spec/arch.py)."""
        enabled = self.enabled_layers()
        return bool(enabled) and isinstance(enabled[-1][1], layers.ActivationSpec) and enabled[-1][1].fn in arch.SQUASHING


# The template form's fields: a model written as `layers` sets none of them.
TEMPLATE_FIELDS = frozenset({"conv", "dense", "activation", "pool", "output"})


class AugmentSpec(_Strict):
    """Random planar affine distortions of the training images (LeCun et al. 1998: translations, scaling, squeezing,
    horizontal shearing; rotations as most tutorials add), drawn anew for every image each epoch from the run's seed
    and the epoch, so every backend trains on the same images and a resumed run continues the same stream. Validation
    and test images are never distorted. Every range is symmetric around the identity; 0 leaves that distortion out;
    `probability` below 1 leaves each image undistorted in an epoch with the rest of that chance."""

    translate: float = Field(0.0, ge=0, le=8, description="pixels: x and y shifts each uniform in [-t, t]")
    rotate: float = Field(0.0, ge=0, le=180, description="degrees: uniform in [-r, r]")
    scale: float = Field(0.0, ge=0, lt=1, description="both axes scaled by one factor uniform in [1-s, 1+s]")
    squeeze: float = Field(0.0, ge=0, lt=1, description="x scaled by f and y by 1/f, f uniform in [1-q, 1+q]")
    shear: float = Field(0.0, ge=0, le=1, description="horizontal shear: x += k * y, k uniform in [-k, k]")
    # The 1998 paper trained on its 60,000 originals beside 540,000 distorted copies: 0.9 keeps about one image in
    # ten as it is in every epoch.
    probability: float = Field(1.0, gt=0, le=1, description="chance that an image is distorted in an epoch (drawn "
                                                           "per image and epoch); the others are trained on as they are")


class DataSpec(_Strict):
    dataset: str = "mnist"  # a name in lenet_bench.data.registry
    input_size: Literal[28, 32] = 32
    # lecun: background -0.1, foreground 1.175 (LeCun et al. 1998, section II.B).
    normalization: Literal["unit", "standardize", "centered", "lecun"] = "unit"
    # Down-sample each image to resize x resize (area averaging) before padding it to input_size.
    resize: int | None = Field(None, gt=0, le=64)
    validation_split: float = Field(0.1, ge=0.0, lt=1.0)
    subset: int | None = Field(None, gt=0, description="use only the first N training images")
    test_subset: int | None = Field(None, gt=0, description="evaluate on the first N test images")
    augment: AugmentSpec | None = None  # None: the training images as they are

    @field_validator("dataset")
    @classmethod
    def _registered_dataset(cls, name: str) -> str:
        if name not in registry.dataset_names():
            raise ValueError(f"unknown dataset {name!r:.60}; expected one of: {', '.join(registry.dataset_names())}")
        return name

    @model_validator(mode="after")
    def _resized_fits_input(self) -> DataSpec:
        if self.resize is not None and (self.resize > self.input_size or (self.input_size - self.resize) % 2):
            raise ValueError(f"resize ({self.resize}) must be at most input_size ({self.input_size}), and leave an "
                             "even margin: the resized image is centred in input_size, never cropped")
        return self


class OptimizerSpec(_Strict):
    """Both backends apply PyTorch's update formulas (eps after bias correction, momentum
    buffer without the learning rate, weight decay added to the gradient), so a spec means
    the same optimizer on either."""

    # sdlm: LeCun et al. (1998)'s stochastic diagonal Levenberg-Marquardt (Appendix C): each
    # parameter's step is lr / (mu + h), h the Gauss-Newton diagonal of the Hessian, estimated on
    # `hessian_samples` training images before each epoch.
    name: Literal["sgd", "adam", "sdlm"]
    lr: float | None = Field(None, gt=0)  # None: 0.01 for sgd, 0.001 for adam, 0.0005 for sdlm
    momentum: float = Field(0.0, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(0.0, ge=0)  # L2 term added to the gradient (PyTorch's meaning)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    # Keras' default; PyTorch's is 1e-8. One value for both keeps the backends comparable.
    eps: float = Field(1e-7, gt=0)
    mu: float = Field(0.02, gt=0, le=1e6)  # sdlm: 0.02 in the paper (section III.C)
    hessian_samples: int = Field(500, gt=0, le=100_000)  # sdlm: 500 in the paper (section III.C)
    # sdlm: None, each epoch's estimate is the mean over its images, the last one forgotten; a number G, Appendix
    # C's running average h <- (1 - G) h + G h_image carried across epochs (the first epoch's is the mean).
    hessian_gamma: float | None = Field(None, gt=0, lt=1)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else {"sgd": 0.01, "adam": 0.001, "sdlm": 0.0005}[self.name]

    @model_validator(mode="after")
    def _sgd_only_options(self) -> OptimizerSpec:
        if self.name != "sgd" and (self.momentum or self.nesterov):
            raise ValueError(f"momentum and nesterov apply to sgd only; received optimizer {self.name!r}")
        if self.nesterov and not self.momentum:
            raise ValueError("nesterov needs momentum > 0")
        # Compared with their defaults, not with what was written: a saved spec (model_dump) writes every
        # field, and must read back as the same spec.
        sdlm_only = sorted(name for name in ("mu", "hessian_samples", "hessian_gamma")
                           if getattr(self, name) != type(self).model_fields[name].default)
        if self.name != "sdlm" and sdlm_only:
            raise ValueError(f"{' and '.join(sdlm_only)} apply to sdlm only; received optimizer {self.name!r}")
        if self.name == "sdlm" and self.weight_decay:
            raise ValueError("sdlm takes no weight_decay (the 1998 method has none)")
        return self


class LossSpec(_Strict):
    """cross_entropy: softmax cross-entropy of the outputs. map: LeCun et al. (1998)'s eq. (9) for
    RBF outputs, penalty of the correct class plus log(e^-j + sum_i e^-penalty_i); with our outputs
    (minus the penalties) it is cross-entropy over the outputs and one more of -j. mse: half the
    squared distance of the outputs to the one-hot target."""

    name: Literal["cross_entropy", "map", "mse"] = "cross_entropy"
    j: float | None = Field(None, gt=0, le=1e3)  # map only: eq. (9)'s positive constant
    # mse only: the target of the other classes' outputs, then the correct class's; None: 0 and 1 (one-hot). Squashed
    # outputs of the 1989-1990 networks were trained towards targets within the squashing function's range (+-1).
    targets: tuple[float, float] | None = None

    @model_validator(mode="after")
    def _j_for_map_only(self) -> LossSpec:
        if (self.name == "map") != (self.j is not None):
            raise ValueError("loss map needs its constant j, and only map takes one; "
                             f"received name {self.name!r}, j {self.j}")
        if self.targets is not None and (self.name != "mse" or self.targets[0] >= self.targets[1]):
            raise ValueError("loss targets are mse's (other classes', correct class's), the first below the second; "
                             f"received name {self.name!r}, targets {list(self.targets)}")
        return self

    @property
    def target_values(self) -> tuple[float, float]:
        """mse's (other classes', correct class's) targets."""
        return self.targets if self.targets is not None else (0.0, 1.0)


class LRPiece(_Strict):
    epochs: int = Field(gt=0, le=MAX_EPOCHS)
    lr: float = Field(gt=0)


class TrainSpec(_Strict):
    optimizer: OptimizerSpec = OptimizerSpec(name="adam")
    batch_size: int = Field(128, gt=0, le=MAX_BATCH_SIZE)
    epochs: int = Field(1, gt=0, le=MAX_EPOCHS)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, max_length=MAX_SEEDS)
    loss: LossSpec = LossSpec(name="cross_entropy", j=None)
    # piecewise: a constant learning rate per epoch from `lr_pieces`, in order; the last holds thereafter.
    schedule: Literal["constant", "cosine", "onecycle", "piecewise"] = "constant"
    lr_pieces: list[LRPiece] | None = Field(None, min_length=1, max_length=MAX_EPOCHS)
    warmup_epochs: float = Field(0.0, ge=0, le=MAX_EPOCHS)
    max_steps_per_epoch: int | None = Field(None, gt=0, le=MAX_STEPS_PER_EPOCH, description="cap for quick runs")
    target_accuracy: float | None = Field(None, gt=0, le=1, description="validation accuracy whose time-to-reach is reported")
    # The validation split is evaluated after every `eval_every`-th epoch and after the last (Keras' validation_freq):
    # evaluating a large model's split after every epoch can cost more than a tenth of its training.
    eval_every: int = Field(1, gt=0, le=MAX_EPOCHS, description="evaluate the validation split every N epochs")

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds must be distinct; received {seeds}")
        if any(s < 0 or s > MAX_SEED for s in seeds):
            raise ValueError(f"seeds must be between 0 and {MAX_SEED}; received {seeds}")
        return seeds

    @model_validator(mode="after")
    def _pieces_for_piecewise(self) -> TrainSpec:
        if (self.schedule == "piecewise") != (self.lr_pieces is not None):
            raise ValueError("schedule piecewise needs lr_pieces, and only piecewise takes them; "
                             f"received schedule {self.schedule!r}")
        if self.schedule == "piecewise" and (self.optimizer.lr is not None or self.warmup_epochs):
            raise ValueError("with schedule piecewise, lr_pieces give every learning rate: "
                             "expected no optimizer.lr and no warmup_epochs")
        return self

    def epoch_learning_rate(self, epoch: int) -> float:
        """The piecewise schedule's learning rate of a 1-based epoch."""
        assert self.lr_pieces is not None
        end = 0
        for piece in self.lr_pieces:
            end += piece.epochs
            if epoch <= end:
                return piece.lr
        return self.lr_pieces[-1].lr


class Expect(_Strict):
    min_test_accuracy: float = Field(0.95, ge=0, le=1)


class Reference(_Strict):
    test_accuracy: float = Field(gt=0, le=1)
    source: str = Field(min_length=1)
    url: str | None = None
    params: int | None = Field(None, gt=0, description="published parameter count, checked against ours")
    epochs: int | None = Field(None, gt=0, le=MAX_EPOCHS)
    notes: str | None = None


class Spec(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    data: DataSpec = DataSpec()
    model: ModelSpec
    # Validated when left out too: a model that needs another loss than the default is refused without a train section.
    train: TrainSpec = Field(TrainSpec(), validate_default=True)
    backends: list[str] = Field(default_factory=lambda: ["torch"], min_length=1)
    devices: list[Device] = Field(default_factory=lambda: [Device.CPU], min_length=1)
    expect: Expect = Expect()
    reference: Reference | None = None

    @field_validator("backends", "devices")
    @classmethod
    def _distinct(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise ValueError(f"entries must be distinct; received {[str(value) for value in values]}")
        return values

    @field_validator("backends")
    @classmethod
    def _registered_backends(cls, names: list[str]) -> list[str]:
        unknown = [n for n in names if n not in backend_registry.names()]
        if unknown:
            raise ValueError(f"unknown backend {unknown[0]!r}; expected one of: {', '.join(backend_registry.names())}")
        return names

    @field_validator("backends")
    @classmethod
    def _backends_can_train_it(cls, names: list[str], info: ValidationInfo) -> list[str]:
        """A backend that cannot train this spec is found here, by `validate`, not when it trains."""
        train = info.data.get("train")
        if train is None:
            return names  # the train section is invalid, and reported on its own
        for name in names:
            reason = backend_registry.entry(name).unsupported(train.optimizer.name)
            if reason:
                raise ValueError(f"{reason} (drop {name} from this spec's backends, or change train.optimizer)")
        return names

    @field_validator("train")
    @classmethod
    def _training_fits_model(cls, train: TrainSpec, info: ValidationInfo) -> TrainSpec:
        model = info.data.get("model")
        if model is None:
            return train  # the model is invalid, and reported on its own
        if train.loss.name == "map" and not model.has_rbf_output:
            raise ValueError("loss map scores RBF penalties: it needs model.output rbf (or an rbf output layer)")
        if model.has_squashed_output and train.loss.name != "mse":
            raise ValueError("a squashed output (an activation after the output layer) is trained on squared error to "
                             "targets within its range: it needs train.loss mse (with targets, e.g. [-1, 1]); "
                             f"received train.loss {train.loss.name}")
        if train.optimizer.name == "sdlm":
            data = info.data.get("data") or DataSpec()
            try:
                refusal = arch.sdlm_refusal(arch.describe(model, (model.in_channels, data.input_size, data.input_size)))
            except arch.ShapeError:
                refusal = None  # the shapes are wrong, and reported on their own (loading)
            if refusal:
                raise ValueError(refusal)
        return train

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.model.in_channels, self.data.input_size, self.data.input_size)

    def summary(self) -> arch.ArchSummary:
        return arch.describe(self.model, self.input_shape)

    def axes(self) -> dict[str, str]:
        """The design choices a user compares; the same keys for every variant."""
        enabled = [layer for _, layer in self.model.enabled_layers()]
        paddings: list[str] = sorted({layer.padding for layer in enabled if isinstance(layer, layers.ConvSpec)}) or ["none"]
        pools: list[str] = sorted({layer.kind for layer in enabled if isinstance(layer, layers.PoolSpec)}) or ["none"]
        return {
            "architecture": self.model.arch_label,
            "activation": "+".join(self.model.activations) or "none",
            "pooling": "+".join(pools),
            "padding": "+".join(paddings),
            "input_size": str(self.data.input_size),
            "optimizer": self.train.optimizer.name,
            "dataset": self.data.dataset,
        }


