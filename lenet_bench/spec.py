"""YAML specs -> validated, typed variants.

Every spec file in a folder is parsed, every matrix is expanded, and every variant is
validated before anything trains. All problems of a folder are collected and raised
together as one `SpecError`, each naming the file, the dotted field, what was expected
and what was received.
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from lenet_bench import arch

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


@dataclass(frozen=True)
class Variant:
    """One fully resolved spec: a matrix cell, or a spec without a matrix."""

    spec: Spec
    file: Path
    base_name: str
    labels: tuple[tuple[str, str], ...] = ()  # (matrix axis, value label) in axis order

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class Issue:
    file: str
    spec: str | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}" + (f" [{self.spec}]" if self.spec else "")
        return f"{where}: {self.field or '(top level)'}: {self.message}"


class SpecError(Exception):
    """Every problem found in the specs, reported together."""

    def __init__(self, issues: list[Issue]):
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


# ---------------------------------------------------------------- loading


def find_spec_files(paths: list[str | Path]) -> tuple[list[Path], list[Issue]]:
    files: list[Path] = []
    issues: list[Issue] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix in SPEC_SUFFIXES and p.is_file())
            if not found:
                issues.append(Issue(str(path), None, "", "no spec files found; expected *.yaml or *.yml files in this folder"))
            files += found
        elif path.is_file():
            files.append(path)
        else:
            issues.append(Issue(str(path), None, "", "no such file or folder"))
    return files, issues


def load_variants(paths: list[str | Path]) -> list[Variant]:
    """Load, expand and validate every spec under `paths`; raise SpecError with all issues."""
    files, issues = find_spec_files(paths)
    variants: list[Variant] = []
    for file in files:
        file_variants, file_issues = load_file(file)
        variants += file_variants
        issues += file_issues
    issues += _duplicate_names(variants)
    if issues:
        raise SpecError(issues)
    return variants


def load_file(file: Path) -> tuple[list[Variant], list[Issue]]:
    try:
        documents = [d for d in yaml.safe_load_all(file.read_text()) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        return [], [Issue(str(file), None, where, f"YAML syntax error: {problem}")]
    except (OSError, UnicodeDecodeError) as err:
        return [], [Issue(str(file), None, "", f"cannot read: {err}")]
    raw_specs: list[tuple[str, Any]] = []
    for doc_index, doc in enumerate(documents):
        entries = doc if isinstance(doc, list) else [doc]
        for entry_index, entry in enumerate(entries):
            prefix = f"[{entry_index}]" if isinstance(doc, list) else ""
            if len(documents) > 1:
                prefix = f"document {doc_index + 1}{prefix}"
            raw_specs.append((prefix, entry))
    if not raw_specs:
        return [], [Issue(str(file), None, "", "the file is empty; expected a spec mapping or a list of them")]
    variants: list[Variant] = []
    issues: list[Issue] = []
    for prefix, raw in raw_specs:
        found, problems = _expand_and_validate(file, prefix, raw)
        variants += found
        issues += problems
    return variants, issues


def _expand_and_validate(file: Path, prefix: str, raw: Any) -> tuple[list[Variant], list[Issue]]:
    if not isinstance(raw, dict):
        return [], [Issue(str(file), prefix or None, "", f"expected a mapping (a spec), received {type(raw).__name__}: {raw!r:.60}")]
    base_name = raw.get("name") if isinstance(raw.get("name"), str) else (prefix or "?")
    raw = copy.deepcopy(raw)
    matrix = raw.pop("matrix", None)
    cells, issues = _matrix_cells(file, base_name, matrix)
    variants: list[Variant] = []
    seen: set[tuple[str, str]] = set()
    for labels, overrides in cells:
        data = copy.deepcopy(raw)
        name = "-".join([str(base_name)] + [label for _, label in labels])
        for path, value in overrides:
            problem = _set_dotted(data, path, value)
            if problem:
                issues.append(Issue(str(file), base_name, f"matrix.{path}", problem))
        if labels:
            data["name"] = name
        try:
            spec = Spec.model_validate(data)
        except ValidationError as err:
            for issue in _pydantic_issues(file, name, err):
                # A matrix repeats the base spec's mistakes in every cell; report each once.
                if (issue.field, issue.message) not in seen:
                    seen.add((issue.field, issue.message))
                    issues.append(issue)
            continue
        semantic = _semantic_issues(file, spec)
        issues += semantic
        if not semantic:
            variants.append(Variant(spec=spec, file=file, base_name=str(base_name), labels=tuple(labels)))
    return variants, issues


def _matrix_cells(file: Path, spec_name: str, matrix: Any) -> tuple[list[tuple[list[tuple[str, str]], list[tuple[str, Any]]]], list[Issue]]:
    """Matrix axes -> cells of (labels, [(dotted path, value)]).

    An axis is either `dotted.path: [v1, v2]` (the value is its own label) or
    `axis_name: {label: {dotted.path: value, ...}, ...}` for a change of several fields.
    """
    if matrix is None:
        return [([], [])], []
    if not isinstance(matrix, dict) or not matrix:
        return [], [Issue(str(file), spec_name, "matrix", f"expected a non-empty mapping of axis -> values, received {matrix!r:.60}")]
    axes: list[list[tuple[str, str, list[tuple[str, Any]]]]] = []
    issues: list[Issue] = []
    for axis, values in matrix.items():
        if isinstance(values, list) and values:
            axes.append([(axis, _label(v), [(axis, v)]) for v in values])
        elif isinstance(values, dict) and values and all(isinstance(o, dict) for o in values.values()):
            axes.append([(axis, _label(label), list(overrides.items())) for label, overrides in values.items()])
        else:
            issues.append(Issue(str(file), spec_name, f"matrix.{axis}",
                                f"expected a non-empty list of values or a mapping of label -> {{field: value}}, received {values!r:.60}"))
    if issues:
        return [], issues
    cells = []
    for combo in itertools.product(*axes):
        cells.append(([(axis, label) for axis, label, _ in combo], [kv for _, _, kvs in combo for kv in kvs]))
    return cells, []


def _label(value: Any) -> str:
    return re.sub(r"[^a-z0-9_.]+", "_", str(value).lower()).strip("_") or "x"


def _set_dotted(data: dict, path: str, value: Any) -> str | None:
    """Set data[a][b][0][c] = value for path 'a.b.0.c'; return a problem message or None."""
    parts = path.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        key: Any = int(part) if isinstance(node, list) and part.isdigit() else part
        if isinstance(node, dict):
            node = node.setdefault(key, {})
        elif isinstance(node, list) and isinstance(key, int) and key < len(node):
            node = node[key]
        else:
            return f"cannot set {path!r}: {'.'.join(parts[:depth + 1])} does not exist in the base spec"
    last = parts[-1]
    if isinstance(node, list):
        if not (last.isdigit() and int(last) < len(node)):
            return f"cannot set {path!r}: index {last} is outside the list of {len(node)}"
        node[int(last)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        return f"cannot set {path!r}: its parent is a {type(node).__name__}, not a mapping"
    return None


def _pydantic_issues(file: Path, spec_name: str, err: ValidationError) -> list[Issue]:
    issues = []
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            message = _unknown_key_message(e["loc"])
        elif e["type"] == "missing":
            message = "required field is missing"
        else:
            message = e["msg"].replace("Input should be", "expected").replace("Value error, ", "")
            message += f"; received {e['input']!r:.80}"
        issues.append(Issue(str(file), spec_name, field, message))
    return issues


def _unknown_key_message(loc: tuple) -> str:
    model: type[BaseModel] = Spec
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        annotation = model.model_fields[part].annotation
        candidates = [a for a in getattr(annotation, "__args__", (annotation,)) if isinstance(a, type) and issubclass(a, BaseModel)]
        if not candidates:
            break
        model = candidates[0]
    allowed = sorted(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {loc[-1]!r}{hint}; expected one of: {', '.join(allowed)}"


def _semantic_issues(file: Path, spec: Spec) -> list[Issue]:
    """Checks that need several fields at once: shapes, dataset fit, published counts."""
    issues = []
    channels, native = NATIVE_SHAPES[spec.data.dataset]
    if spec.model.in_channels != channels:
        issues.append(Issue(str(file), spec.name, "model.in_channels",
                            f"{spec.data.dataset} has {channels} channel(s); received in_channels {spec.model.in_channels}"))
    if spec.data.input_size < native:
        issues.append(Issue(str(file), spec.name, "data.input_size",
                            f"{spec.data.dataset} images are {native}x{native} and are padded, never cropped; "
                            f"expected {native} or more, received {spec.data.input_size}"))
    try:
        summary = spec.summary()
    except arch.ShapeError as err:
        return issues + [Issue(str(file), spec.name, err.field, err.message)]
    ref = spec.reference
    if ref and ref.params is not None and ref.params != summary.params:
        issues.append(Issue(str(file), spec.name, "reference.params",
                            f"the published count {ref.params:,} does not match this model's {summary.params:,} parameters"))
    return issues


def _duplicate_names(variants: list[Variant]) -> list[Issue]:
    first: dict[str, Variant] = {}
    issues = []
    for v in variants:
        if v.name in first:
            issues.append(Issue(str(v.file), v.name, "name",
                                f"duplicate spec name {v.name!r}; already defined in {first[v.name].file}"))
        else:
            first.setdefault(v.name, v)
    return issues
