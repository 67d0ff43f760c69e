"""YAML specs -> validated, typed variants: loading, matrix expansion, and error collection.

Every spec file in a folder is parsed, every matrix is expanded, and every variant is
validated before anything trains. All problems of a folder are collected and raised
together as one `SpecError`, each naming the file, the dotted field, what was expected
and what was received.

What a spec may ask for is bounded before anything is built from it: the YAML itself
(bounded_yaml), every field (schema), and here the matrix (its cells are counted before
they are expanded), the model as a whole (layers, parameters, FLOPs from the layer
description), the data it asks of its dataset, and the names MLflow will be given.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lenet_bench.data import registry
from lenet_bench.spec import arch, bounded_yaml, schema
from lenet_bench.spec.schema import SPEC_SUFFIXES, Spec

DEFAULT_SUITE = Path("specs")  # the specs `effects`, `report` and run's reports read when none are named
MAX_VARIANTS = 10_000  # per invocation, every matrix cell counted before any is built
MAX_LAYERS = schema.MAX_LAYERS  # the described layers; a written list is bounded by the schema too
MAX_PARAMS = 50_000_000  # LeNet-5 has 61,706; the 20/50/500 LeNet 1,256,080
MAX_FLOPS = 10_000_000_000  # forward FLOPs per image; LeNet-5 needs under a million
MAX_ISSUES_PER_FILE = 50
# MLflow keeps metric names, param and tag keys (and a SQL store its run names) to 250 characters.
# The longest of them that holds a spec name is the invocation's metric
# '<name>@<overrides>/<backend>/<device>/delta_to_baseline_ci_high'; 100 leaves room for the rest.
MLFLOW_KEY_LENGTH = 250
MAX_NAME_LENGTH = 100


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


class _Budget:
    """The variants an invocation may still expand: matrix cells are counted before they are built."""

    def __init__(self) -> None:
        self.used = 0

    def refusal(self, cells: int, shape: str) -> str | None:
        if cells > MAX_VARIANTS:
            return f"the matrix has {cells:,} cells ({shape}); expected at most {MAX_VARIANTS:,}"
        if self.used + cells > MAX_VARIANTS:
            return (f"{cells:,} more variant(s) would make {self.used + cells:,} in one invocation; expected at most "
                    f"{MAX_VARIANTS:,} (validate or run fewer spec files at once)")
        self.used += cells
        return None


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
        elif path.exists():  # a pipe would block the read forever, a device never end
            issues.append(Issue(str(path), None, "", "not a regular file or folder (a pipe, device or socket); "
                                                     "expected a spec file or a folder of them"))
        else:
            issues.append(Issue(str(path), None, "", "no such file or folder"))
    return files, issues


def load_variants(paths: list[str | Path]) -> list[Variant]:
    """Load, expand and validate every spec under `paths`; raise SpecError with all issues."""
    files, issues = find_spec_files(paths)
    variants: list[Variant] = []
    budget = _Budget()
    for file in files:
        file_variants, file_issues = load_file(file, budget)
        variants += file_variants
        issues += _capped(file, file_issues)
    issues += _duplicate_names(variants)
    if issues:
        raise SpecError(issues)
    return variants


def load_file(file: Path, budget: _Budget) -> tuple[list[Variant], list[Issue]]:
    try:
        documents = bounded_yaml.read_documents(file)
    except bounded_yaml.ReadError as err:
        return [], [Issue(str(file), None, "", str(err))]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err)
        message = problem if isinstance(err, bounded_yaml.DocumentError) else f"YAML syntax error: {problem}"
        return [], [Issue(str(file), None, where, message)]
    raw_specs: list[tuple[str, Any]] = []
    for doc_index, doc in enumerate(documents):
        entries = doc if isinstance(doc, list) else [doc]
        for entry_index, entry in enumerate(entries):
            prefix = f"[{entry_index}]" if isinstance(doc, list) else ""
            if len(documents) > 1:
                prefix = f"document {doc_index + 1}{prefix}"
            raw_specs.append((prefix, entry))
    if not raw_specs:
        return [], [Issue(str(file), None, "", "the file holds no spec; expected a spec mapping or a list of them")]
    variants: list[Variant] = []
    issues: list[Issue] = []
    for prefix, raw in raw_specs:
        found, problems = _expand_and_validate(file, prefix, raw, budget)
        variants += found
        issues += problems
    return variants, issues


def _capped(file: Path, issues: list[Issue]) -> list[Issue]:
    """A file of ten thousand broken entries reports the first problems, and how many more there are."""
    if len(issues) <= MAX_ISSUES_PER_FILE:
        return issues
    more = len(issues) - MAX_ISSUES_PER_FILE
    return issues[:MAX_ISSUES_PER_FILE] + [Issue(str(file), None, "", f"{more:,} more problem(s) in this file, "
                                                                       "not shown; fix the ones above first")]


def _expand_and_validate(file: Path, prefix: str, raw: Any, budget: _Budget) -> tuple[list[Variant], list[Issue]]:
    if not isinstance(raw, dict):
        return [], [Issue(str(file), prefix or None, "", f"expected a mapping (a spec), received {type(raw).__name__}: {raw!r:.60}")]
    written = raw.get("name")
    base_name = written if isinstance(written, str) else (prefix or "?")
    raw = copy.deepcopy(raw)
    matrix = raw.pop("matrix", None)
    axes, issues = _matrix_axes(file, base_name, matrix)
    if issues:
        return [], issues
    refusal = budget.refusal(math.prod(len(axis) for axis in axes), " x ".join(str(len(axis)) for axis in axes))
    if refusal:
        return [], [Issue(str(file), base_name, "matrix" if matrix is not None else "", refusal)]
    variants: list[Variant] = []
    seen: set[tuple[str, str]] = set()
    for labels, overrides in _cells(axes):
        data = copy.deepcopy(raw)
        name = "-".join([base_name] + [label for _, label in labels])
        problems = [Issue(str(file), base_name, f"matrix.{path}", problem)
                    for path, value in overrides if (problem := _set_dotted(data, path, value))]
        if labels:
            data["name"] = name
        try:
            spec = Spec.model_validate(data)
        except ValidationError as err:
            problems += _pydantic_issues(file, name, err)
        else:
            problems += _semantic_issues(file, spec)
            if not problems:
                variants.append(Variant(spec=spec, file=file, base_name=base_name, labels=tuple(labels)))
        for issue in problems:
            # A matrix repeats the base spec's mistakes in every cell; report each once.
            if (issue.field, issue.message) not in seen:
                seen.add((issue.field, issue.message))
                issues.append(issue)
    return variants, issues


Axis = list[tuple[str, str, list[tuple[str, Any]]]]  # (axis, value label, [(dotted path, value)]) per value


def revalidated(variant: Variant, changes: dict[str, Any], where: str) -> Variant:
    """The variant with dotted-path `changes` applied (the command line's --epochs, --subset, ...), checked
    exactly as a spec file is; a SpecError names `where` (e.g. "--subset 100000") and the field."""
    data = variant.spec.model_dump(mode="json", exclude_unset=True)  # what was written: defaults stay defaults
    for path, value in changes.items():
        problem = _set_dotted(data, path, value)
        if problem:
            raise SpecError([Issue(where, variant.name, path, problem)])
    try:
        spec = Spec.model_validate(data)
    except ValidationError as err:
        raise SpecError(_pydantic_issues(Path(where), variant.name, err)) from None
    problems = _semantic_issues(Path(where), spec)
    if problems:
        raise SpecError(problems)
    return dataclasses.replace(variant, spec=spec)


def _matrix_axes(file: Path, spec_name: str, matrix: Any) -> tuple[list[Axis], list[Issue]]:
    """Matrix axes, checked; nothing is expanded yet.

    An axis is either `dotted.path: [v1, v2]` (the value is its own label) or
    `axis_name: {label: {dotted.path: value, ...}, ...}` for a change of several fields.
    """
    if matrix is None:
        return [], []
    if not isinstance(matrix, dict) or not matrix:
        return [], [Issue(str(file), spec_name, "matrix", f"expected a non-empty mapping of axis -> values, received {matrix!r:.60}")]
    axes: list[Axis] = []
    issues: list[Issue] = []
    for axis, values in matrix.items():
        field = f"matrix.{axis}"
        if not isinstance(axis, str):
            issues.append(Issue(str(file), spec_name, field, f"expected an axis name or a dotted field path, "
                                                             f"received {type(axis).__name__} {axis!r:.60}"))
        elif isinstance(values, list) and values:
            axes.append([(axis, _label(v), [(axis, v)]) for v in values])
        elif isinstance(values, dict) and values and all(isinstance(o, dict) for o in values.values()):
            paths = [p for o in values.values() for p in o]
            bad = next((p for p in paths if not isinstance(p, str)), None)
            if bad is not None:
                issues.append(Issue(str(file), spec_name, field, f"expected dotted field paths as keys, "
                                                                 f"received {type(bad).__name__} {bad!r:.60}"))
            else:
                axes.append([(axis, _label(label), list(o.items())) for label, o in values.items()])
        else:
            issues.append(Issue(str(file), spec_name, field,
                                f"expected a non-empty list of values or a mapping of label -> {{field: value}}, received {values!r:.60}"))
    return axes, issues


def _cells(axes: list[Axis]) -> Iterator[tuple[list[tuple[str, str]], list[tuple[str, Any]]]]:
    """Matrix cells of (labels, [(dotted path, value)]), one at a time; no axes: the spec itself."""
    for combo in itertools.product(*axes):
        yield [(axis, label) for axis, label, _ in combo], [kv for _, _, kvs in combo for kv in kvs]


def _label(value: Any) -> str:
    return re.sub(r"[^a-z0-9_.]+", "_", str(value).lower()).strip("_") or "x"


def _set_dotted(data: dict, path: str, value: Any) -> str | None:
    """Set data[a][b][0][c] = value for path 'a.b.0.c'; return a problem message or None.

    An entry of a list of layers is found by its index or by its name (`model.layers.drop1.rate`), and
    `layers.` is short for `model.layers.`.
    """
    if path.startswith("layers."):
        path = "model." + path
    parts = path.split(".")
    node: Any = data
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, dict):
            node = node.setdefault(part, {})
            continue
        index = _list_index(node, part)
        if index is None:
            if isinstance(node, list) and not part.isdigit():
                return (f"cannot set {path!r}: {part} is neither an index of the list of {len(node)} nor a name in it"
                        f" (names: {', '.join(str(e.get('name')) for e in node if isinstance(e, dict) and e.get('name')) or 'none'})")
            return f"cannot set {path!r}: {'.'.join(parts[:depth + 1])} does not exist in the base spec"
        node = node[index]
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last)
        if index is None:
            return f"cannot set {path!r}: {last} is neither an index of the list of {len(node)} nor a name in it"
        node[index] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        return f"cannot set {path!r}: its parent is a {type(node).__name__}, not a mapping"
    return None


def _list_index(node: Any, part: str) -> int | None:
    """The position of `part` (an index, or the `name` of an entry) in `node`, if node is a list that has it."""
    if not isinstance(node, list):
        return None
    if part.isdigit():
        return int(part) if int(part) < len(node) else None
    return next((i for i, entry in enumerate(node) if isinstance(entry, dict) and entry.get("name") == part), None)


# ---------------------------------------------------------------- messages

_BOUNDS = {"greater_than": ("greater than", "gt"), "greater_than_equal": ("at least", "ge"),
           "less_than": ("less than", "lt"), "less_than_equal": ("at most", "le")}


def _pydantic_issues(file: Path, spec_name: str, err: ValidationError) -> list[Issue]:
    issues = []
    for e in err.errors():
        field = ".".join(_short(str(p)) for p in e["loc"])
        kind, ctx = e["type"], e.get("ctx") or {}
        if kind == "extra_forbidden":
            message = _unknown_key_message(e["loc"])
        elif kind == "missing":
            message = "required field is missing"
        elif kind in _BOUNDS:
            words, key = _BOUNDS[kind]
            message = f"expected {words} {_shown(ctx[key])}, received {_shown(e['input'])}"
        elif kind in ("too_long", "too_short"):
            words = "at most" if kind == "too_long" else "at least"
            limit = ctx["max_length"] if kind == "too_long" else ctx["min_length"]
            message = f"expected {words} {limit:,} entries, received {ctx['actual_length']:,}"
        elif kind == "finite_number":
            message = f"expected a finite number (not .inf or .nan), received {_shown(e['input'])}"
        else:
            message = e["msg"].replace("Input should be", "expected").replace("Value error, ", "")
            if "received" not in message:  # the schema's own checks say it themselves
                message += f"; received {_shown(e['input'])}"
        issues.append(Issue(str(file), spec_name, field, message))
    return issues


def _shown(value: Any) -> str:
    """A received value as the user wrote it, cut short: 1e12 reads 1000000000000, not 1000000000000.0."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e18:
        return str(int(value))
    return f"{value!r:.80}"


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


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
    key = _short(str(loc[-1]))
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; expected one of: {', '.join(allowed)}"


# ---------------------------------------------------------------- checks across fields


def _semantic_issues(file: Path, spec: Spec) -> list[Issue]:
    """Checks that need several fields at once: names, dataset fit, shapes, model size, published counts."""
    issues = [Issue(str(file), spec.name, field, message)
              for field, message in [*_name_problems(spec), *_data_problems(spec), *_train_problems(spec)]]
    try:
        summary = spec.summary()
    except arch.ShapeError as err:
        return issues + [Issue(str(file), spec.name, err.field, err.message)]
    issues += [Issue(str(file), spec.name, "model", message) for message in _size_problems(summary)]
    ref = spec.reference
    if ref and ref.params is not None and ref.params != summary.params:
        issues.append(Issue(str(file), spec.name, "reference.params",
                            f"the published count {ref.params:,} does not match this model's {summary.params:,} parameters"))
    return issues


def _name_problems(spec: Spec) -> Iterator[tuple[str, str]]:
    # The recorder builds MLflow run names and metric keys from the name; too long, and the run breaks at its end.
    if len(spec.name) > MAX_NAME_LENGTH:
        yield "name", (f"expected at most {MAX_NAME_LENGTH} characters (matrix labels included), received "
                       f"{len(spec.name)}: MLflow run names and metric keys, which hold it, are limited to "
                       f"{MLFLOW_KEY_LENGTH}")
    label = spec.model.arch_label
    if len(label) > MAX_NAME_LENGTH:
        yield "model.arch", (f"the architecture label {_short(label)!r} has {len(label)} characters; expected at "
                             f"most {MAX_NAME_LENGTH}, like spec names (set a shorter model.arch)")


def _data_problems(spec: Spec) -> Iterator[tuple[str, str]]:
    d, model = spec.data, spec.model
    dataset = registry.info(d.dataset)
    if model.in_channels != dataset.channels:
        yield "model.in_channels", (f"{dataset.name} has {dataset.channels} channel(s); "
                                    f"received in_channels {model.in_channels}")
    if model.num_classes != dataset.num_classes:
        yield "model.num_classes", (f"{dataset.name} has {dataset.num_classes} classes; expected "
                                    f"{dataset.num_classes}, received {model.num_classes}")
    native = dataset.image_size
    if d.input_size < native:
        yield "data.input_size", (f"{dataset.name} images are {native}x{native} and are padded, never cropped; "
                                  f"expected {native} or more, received {d.input_size}")
    if d.subset is not None and d.subset > dataset.n_train:
        yield "data.subset", (f"{dataset.name} has {dataset.n_train:,} training images; expected at most "
                              f"{dataset.n_train:,}, received {d.subset:,}")
    if d.test_subset is not None and d.test_subset > dataset.n_test:
        yield "data.test_subset", (f"{dataset.name} has {dataset.n_test:,} test images; expected at most "
                                   f"{dataset.n_test:,}, received {d.test_subset:,}")
    # The split of lenet_bench.data.prepare (Keras' formula): the first floor(n * (1 - split)) images are fitted.
    n = min(d.subset or dataset.n_train, dataset.n_train)
    n_fit = math.floor(n * (1.0 - d.validation_split))
    if n_fit == 0:
        yield "data.validation_split", (f"validation_split {d.validation_split} of {n:,} image(s) leaves none to "
                                        "train on; expected a smaller split or a larger subset")
    elif n_fit == n and spec.train.target_accuracy is not None:
        yield "train.target_accuracy", (f"time to target is measured on the validation split, which is empty here "
                                        f"(validation_split {d.validation_split} of {n:,} image(s)); expected a "
                                        "validation split with images, or no target_accuracy")


def _train_problems(spec: Spec) -> Iterator[tuple[str, str]]:
    t = spec.train
    if t.warmup_epochs > t.epochs:
        yield "train.warmup_epochs", (f"expected at most epochs ({t.epochs}), received {t.warmup_epochs}: "
                                      "the warm-up would never end")


def _size_problems(summary: arch.ArchSummary) -> Iterator[str]:
    if len(summary.layers) > MAX_LAYERS:
        yield f"{len(summary.layers):,} layers; expected at most {MAX_LAYERS}"
    if summary.params > MAX_PARAMS:
        yield f"{summary.params:,} parameters; expected at most {MAX_PARAMS:,}"
    if summary.flops > MAX_FLOPS:
        yield f"{summary.flops:,} FLOPs per image (forward); expected at most {MAX_FLOPS:,}"


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
