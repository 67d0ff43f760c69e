"""YAML specs -> validated, typed variants: loading, matrix expansion, and error collection.

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
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from lenet_bench.spec import arch
from lenet_bench.spec.schema import NATIVE_SHAPES, SPEC_SUFFIXES, Spec

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
