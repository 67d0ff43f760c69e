"""The bodies of test_backends.py's conformance tests: each exercises one backend, by name, and returns
plain data, so that it runs in the test process or in a fresh one (backend_cases.py); the tests compare."""

from __future__ import annotations

import importlib
import tempfile
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lenet_bench import backends
from lenet_bench.data import PreparedData, load_dataset, prepare
from lenet_bench.spec import Spec
from lenet_bench.training.result import EpochRecord

SMALL = {  # a quick spec: 2 short epochs on a subset
    "name": "small",
    "data": {"input_size": 28, "subset": 512, "test_subset": 256, "validation_split": 0.1},
    "model": {"conv": [{"filters": 4}, {"filters": 8}], "dense": [32]},
    "train": {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "batch_size": 64, "epochs": 2},
}
MAX_STEPS = 3


def spec_of(raw: dict, **train: Any) -> Spec:
    raw = {**raw, "train": {**raw.get("train", {}), **train}}
    return Spec.model_validate(raw)


@cache
def small_data(mnist_dir: Path) -> PreparedData:
    d = spec_of(SMALL).data
    return prepare(load_dataset("mnist", mnist_dir, download=False), input_size=d.input_size,
                   normalization=d.normalization, validation_split=d.validation_split, subset=d.subset,
                   test_subset=d.test_subset)


def round_trip_weights(spec: Spec) -> list[np.ndarray]:
    """Arbitrary float32 arrays of the spec's weight shapes (canonical layout), the same on every call."""
    rng = np.random.default_rng(1)
    return [rng.standard_normal(shape).astype(np.float32) for shape in spec.summary().weight_shapes]


class RecordingProgress:
    def __init__(self) -> None:
        self.total: int | None = None
        self.advanced = 0
        self.records: list[EpochRecord] = []

    def start(self, total_steps: int) -> None:
        self.total = total_steps

    def advance(self, steps: int) -> None:
        self.advanced += steps

    def epoch_done(self, record: EpochRecord) -> None:
        self.records.append(record)


def _train(backend: backends.Backend, spec: Spec, data: PreparedData, seed: int = 0,
           progress: RecordingProgress | None = None) -> Any:
    model = backend.build(spec, seed, "cpu")
    return backend.train(model, spec, data, seed, "cpu", progress or RecordingProgress(), MAX_STEPS)


def protocol_constants(name: str) -> dict[str, Any]:
    backend = backends.activate(name)
    return {"NAME": backend.NAME, "MLFLOW_FLAVOR": backend.MLFLOW_FLAVOR,
            "framework_version": backend.framework_version(),
            "cpu_reason": backend.unavailable_reason("cpu"), "gpu_reason": backend.unavailable_reason("gpu")}


def mlflow_save_options(name: str) -> dict[str, Any]:
    return backends.activate(name).mlflow_save_options()


def mlflow_round_trip(name: str, mnist_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """(logits of the model reloaded by MLflow, logits of the model), as predict.py reloads a logged model."""
    backend = backends.activate(name)
    flavor = importlib.import_module(f"mlflow.{backend.MLFLOW_FLAVOR}")
    model = backend.build(spec_of(SMALL), 0, "cpu")
    x = small_data(mnist_dir).x_test[:8]
    with tempfile.TemporaryDirectory() as folder:
        flavor.save_model(model, f"{folder}/model", **backend.mlflow_save_options())  # mlflow.keras wants a str
        reloaded = flavor.load_model(f"{folder}/model")
    return backend.predict_logits(reloaded, x, "cpu"), backend.predict_logits(model, x, "cpu")


def param_counts(name: str, spec: Spec) -> dict[str, int]:
    backend = backends.activate(name)
    counts = {}
    for init in ("glorot_uniform", "framework"):
        variant = spec.model_copy(update={"model": spec.model.model_copy(update={"init": init})})
        counts[init] = backend.count_params(backend.build(variant, 0, "cpu"))
    return counts


def built_weights(name: str, scheme: str) -> list[np.ndarray]:
    backend = backends.activate(name)
    return backend.get_weights(backend.build(spec_of({**SMALL, "model": {**SMALL["model"], "init": scheme}}), 3, "cpu"))


def weights_round_trip(name: str, raw: dict) -> tuple[list[np.ndarray], bool]:
    """(weights read back after setting round_trip_weights, whether a list one short was refused)."""
    backend = backends.activate(name)
    spec = spec_of(raw)
    model = backend.build(spec, 0, "cpu")
    weights = round_trip_weights(spec)
    backend.set_weights(model, weights)
    got = backend.get_weights(model)
    try:
        backend.set_weights(model, weights[:-1])
    except ValueError:
        return got, True
    return got, False


def predicted_logits(name: str, mnist_dir: Path) -> np.ndarray:
    backend = backends.activate(name)
    return backend.predict_logits(backend.build(spec_of(SMALL), 0, "cpu"), small_data(mnist_dir).x_test[:5], "cpu")


def short_training_run(name: str, mnist_dir: Path) -> dict[str, Any]:
    backend = backends.activate(name)
    progress = RecordingProgress()
    result = _train(backend, spec_of(SMALL), small_data(mnist_dir), progress=progress)
    return {"NAME": backend.NAME, "framework_version": backend.framework_version(), "progress": progress,
            "trained_model_params": backend.count_params(result.model), "result": replace(result, model=None)}


def same_seed_weights(name: str, mnist_dir: Path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    backend = backends.activate(name)
    data = small_data(mnist_dir)
    first, second = (backend.get_weights(_train(backend, spec_of(SMALL), data, seed=5).model) for _ in range(2))
    return first, second


def framework_init_weights(name: str) -> tuple[list[np.ndarray], ...]:
    """Weights of init 'framework' for seeds 7, 7 and 8."""
    backend = backends.activate(name)
    spec = spec_of({**SMALL, "model": {**SMALL["model"], "init": "framework"}})
    return tuple(backend.get_weights(backend.build(spec, seed, "cpu")) for seed in (7, 7, 8))
