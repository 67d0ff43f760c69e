"""What makes two runs the same run: the spec as trained, backend, device, seed, code, framework and data.

The code version hashes the program (without comments, docstrings or layout) of every file
whose change alters a trained result: the shared training and data code, the layer
description, and the backend's own folder. Rewording a comment does not make recorded runs
stale; changing an expression does.

Hardware is deliberately not part of a run's identity: the same seed trains to the same
accuracy anywhere, and a run recorded on another machine is reused rather than retrained.
Its timings are kept apart instead: every row records its hardware class and load, and
`compare` and `report` never put timings of different hardware or conditions in one mean.
The framework version is part of the identity (another release may compute differently).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

import lenet_bench
from lenet_bench import backends
from lenet_bench.engine.plan import Job

# Modules whose program decides what a run computes, besides the backend's own.
SHARED_RESULT_CODE = ("lenet_bench.data", "lenet_bench.training", "lenet_bench.spec.arch")
# Spec fields that do not change what a run trains: its siblings' seeds (`--seed 0` must match
# seed 0 of a full run), the expectation (checked against the current spec), and prose.
_NOT_FINGERPRINTED = ("description", "expect", "reference")
_NOT_RESULT_CODE = ("reference.py",)  # a backend's plain loop for the bench trains no recorded run
_NEW_FIELD_DEFAULTS = (("train", "eval_every", 1), ("model", "layers", None), ("data", "augment", None),
                       ("train.optimizer", "hessian_gamma", None), ("train.loss", "targets", None),
                       ("data.augment", "probability", 1.0))


def code_without_prose(source: str) -> str:
    """The program in `source`, without comments, docstrings or layout."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)  # no line numbers: attributes are left out by default


def _module_files(module: str) -> list[Path]:
    """The .py files of a module, or of a package's whole folder, found without importing it."""
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise ValueError(f"cannot find the code of module {module!r}")
    origin = Path(found.origin)
    return sorted(origin.parent.rglob("*.py")) if origin.name == "__init__.py" else [origin]


@functools.cache  # the code does not change during an invocation
def code_version(backend: str) -> str:
    entry = backends.entry(backend)
    modules = (*SHARED_RESULT_CODE, entry.module, *entry.shared_code)
    digest = hashlib.sha256(lenet_bench.__version__.encode())
    for module in modules:
        for path in (p for p in _module_files(module) if p.name not in _NOT_RESULT_CODE):
            digest.update(path.name.encode())
            digest.update(code_without_prose(path.read_text()).encode())
    return f"{lenet_bench.__version__}+{digest.hexdigest()[:10]}"


def fingerprint(job: Job, data_key: str, framework_versions: str) -> str:
    """What identifies a run's result: its spec (seeds aside), backend, device, seed, the code that trains it,
    its frameworks' versions (`backends.framework_versions`) and its data."""
    spec = {k: v for k, v in job.spec.model_dump(mode="json").items() if k not in _NOT_FINGERPRINTED}
    # Fields whose default is what every run recorded before they existed did: left out at their default, so that
    # those runs still match (a spec that writes them gets a fingerprint of its own).
    for path, field, default in _NEW_FIELD_DEFAULTS:
        section: Any = spec
        for key in path.split("."):
            section = section.get(key) if section else None  # None: no such section (a spec without augment)
        if section is not None and section.get(field, default) == default:
            section.pop(field, None)
    spec["train"] = {k: v for k, v in spec["train"].items() if k != "seeds"}
    payload = {
        "spec": spec, "backend": job.backend, "device": job.device.value, "seed": job.seed,
        "code": code_version(job.backend), "framework": framework_versions, "data": data_key,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:20]
