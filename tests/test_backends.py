"""Every registered backend honours the protocol (backends/protocol.py).

Each test runs once per name in the registry; a backend that cannot run here is skipped
with the registry's own reason, never silently left out.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from conftest import require_backend
from lenet_bench import backends
from lenet_bench.data import prepare
from lenet_bench.spec import Spec, load_variants
from lenet_bench.training.result import EpochRecord, RunResult
from lenet_bench.training.weights import initial_weights

REPO = Path(__file__).resolve().parents[1]

# Written out here, not read from specs/, so the published counts are checked whatever specs/ holds.
LENET5 = {  # LeNet-5 with C5 as a 120-unit dense layer reading the 16x5x5 map
    "name": "lenet5-32",
    "data": {"input_size": 32},
    "model": {"conv": [{"filters": 6}, {"filters": 16}], "dense": [120, 84]},
}
LENET_20_50_500_SAME = {  # Caffe/Keras-example LeNet with 'same' convolutions on 28x28
    "name": "lenet-20-50-500-same",
    "data": {"input_size": 28},
    "model": {"conv": [{"filters": 20, "padding": "same"}, {"filters": 50, "padding": "same"}], "dense": [500]},
}
PUBLISHED_PARAMS = {"lenet5-32": 61_706, "lenet-20-50-500-same": 1_256_080}

SMALL = {  # a quick spec: 2 short epochs on a subset
    "name": "small",
    "data": {"input_size": 28, "subset": 512, "test_subset": 256, "validation_split": 0.1},
    "model": {"conv": [{"filters": 4}, {"filters": 8}], "dense": [32]},
    "train": {"optimizer": {"name": "sgd", "lr": 0.05, "momentum": 0.9}, "batch_size": 64, "epochs": 2},
}
MAX_STEPS = 3


def _spec(raw: dict, **train) -> Spec:
    raw = {**raw, "train": {**raw.get("train", {}), **train}}
    return Spec.model_validate(raw)


def _param_count_specs() -> list[Spec]:
    return [v.spec for v in load_variants([REPO / "specs"])] + [_spec(LENET5), _spec(LENET_20_50_500_SAME)]


@pytest.fixture(params=backends.names())
def backend(request):
    return require_backend(request.param)


@pytest.fixture(scope="session")
def small_data(mnist_raw):
    d = _spec(SMALL).data
    return prepare(mnist_raw, input_size=d.input_size, normalization=d.normalization,
                   validation_split=d.validation_split, subset=d.subset, test_subset=d.test_subset)


class RecordingProgress:
    def __init__(self):
        self.total, self.advanced, self.records = None, 0, []

    def start(self, total_steps: int) -> None:
        self.total = total_steps

    def advance(self, steps: int) -> None:
        self.advanced += steps

    def epoch_done(self, record: EpochRecord) -> None:
        self.records.append(record)


def _train(backend, spec: Spec, data, seed: int = 0, progress=None) -> RunResult:
    model = backend.build(spec, seed, "cpu")
    return backend.train(model, spec, data, seed, "cpu", progress or RecordingProgress(), MAX_STEPS)


def test_protocol_constants(backend):
    assert backend.NAME in backends.names()
    assert isinstance(backend.MLFLOW_FLAVOR, str) and backend.MLFLOW_FLAVOR  # an mlflow.<flavor> module
    assert isinstance(backend.framework_version(), str) and backend.framework_version()
    assert backend.unavailable_reason("cpu") is None
    gpu_reason = backend.unavailable_reason("gpu")
    assert gpu_reason is None or (isinstance(gpu_reason, str) and gpu_reason)


def test_mlflow_save_options_pin_the_framework(backend):
    options = backend.mlflow_save_options()
    assert isinstance(options, dict)
    assert any(req.startswith(backend.NAME) for req in options["pip_requirements"])


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")  # Keras' saver
def test_model_saved_by_mlflow_predicts_the_same(backend, small_data, tmp_path):
    # predict.py reloads a logged model with MLflow and hands it back to predict_logits.
    mlflow_flavor = pytest.importorskip(f"mlflow.{backend.MLFLOW_FLAVOR}")
    model = backend.build(_spec(SMALL), 0, "cpu")
    folder = str(tmp_path / "model")  # mlflow.keras wants a str
    mlflow_flavor.save_model(model, folder, **backend.mlflow_save_options())
    reloaded = mlflow_flavor.load_model(folder)
    x = small_data.x_test[:8]
    np.testing.assert_array_equal(backend.predict_logits(reloaded, x, "cpu"), backend.predict_logits(model, x, "cpu"))


def test_published_counts_are_the_analytic_ones():
    for raw in (LENET5, LENET_20_50_500_SAME):
        assert _spec(raw).summary().params == PUBLISHED_PARAMS[raw["name"]]


@pytest.mark.parametrize("spec", _param_count_specs(), ids=lambda s: s.name)
def test_param_count_is_analytic(backend, spec):
    for init in ("glorot_uniform", "framework"):
        variant = spec.model_copy(update={"model": spec.model.model_copy(update={"init": init})})
        assert backend.count_params(backend.build(variant, 0, "cpu")) == spec.summary().params


@pytest.mark.parametrize("scheme", ["glorot_uniform", "torch_default"])
def test_build_loads_canonical_initial_weights(backend, scheme):
    spec = _spec({**SMALL, "model": {**SMALL["model"], "init": scheme}})
    expected = initial_weights(spec.summary(), scheme, seed=3)
    for got, want in zip(backend.get_weights(backend.build(spec, 3, "cpu")), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("raw", [SMALL, LENET5, {"name": "dense-only", "model": {"dense": [16]}}],
                         ids=lambda raw: raw["name"])
def test_weights_round_trip(backend, raw):
    spec = _spec(raw)
    model = backend.build(spec, 0, "cpu")
    rng = np.random.default_rng(1)
    shapes = spec.summary().weight_shapes
    weights = [rng.standard_normal(shape).astype(np.float32) for shape in shapes]
    backend.set_weights(model, weights)
    for got, want in zip(backend.get_weights(model), weights, strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError):
        backend.set_weights(model, weights[:-1])


def test_predict_logits_shape(backend, small_data):
    spec = _spec(SMALL)
    logits = backend.predict_logits(backend.build(spec, 0, "cpu"), small_data.x_test[:5], "cpu")
    assert logits.shape == (5, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()


def test_short_training_run(backend, small_data):
    spec = _spec(SMALL)
    progress = RecordingProgress()
    result = _train(backend, spec, small_data, progress=progress)

    assert isinstance(result, RunResult)
    assert (result.backend, result.device) == (backend.NAME, "cpu")
    assert result.framework_version == backend.framework_version()
    assert result.params == spec.summary().params
    steps = MAX_STEPS * spec.train.epochs
    assert progress.total == progress.advanced == steps
    assert progress.records == result.history
    assert [r.epoch for r in result.history] == [1, 2]
    for record in result.history:
        assert record.images == MAX_STEPS * spec.train.batch_size
        assert math.isfinite(record.train_loss) and 0 <= record.train_accuracy <= 1
        assert math.isfinite(record.val_loss) and 0 <= record.val_accuracy <= 1
        assert record.seconds > 0
    assert result.history[-1].elapsed == pytest.approx(sum(r.seconds for r in result.history))
    # Learning happened: SGD with momentum on 6 steps of 64 images moves the loss below chance.
    assert result.history[-1].train_loss < math.log(10)

    assert result.test_predictions.shape == (len(small_data.y_test),)
    assert result.test_accuracy == pytest.approx(np.mean(result.test_predictions == small_data.y_test))
    assert math.isfinite(result.test_loss)
    assert result.warmup_seconds > 0 and result.steady_seconds >= 0
    assert result.warmup_images + result.steady_images == sum(r.images for r in result.history)
    assert result.data_seconds >= 0 and result.eval_seconds > 0
    for key in ("inference_images_per_sec", "latency_p50_ms", "latency_p95_ms"):
        assert result.timings[key] > 0
    assert backend.count_params(result.model) == result.params


def test_same_seed_same_weights(backend, small_data):
    spec = _spec(SMALL)
    first = backend.get_weights(_train(backend, spec, small_data, seed=5).model)
    second = backend.get_weights(_train(backend, spec, small_data, seed=5).model)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_framework_init_is_seeded(backend):
    spec = _spec({**SMALL, "model": {**SMALL["model"], "init": "framework"}})
    first, second = (backend.get_weights(backend.build(spec, 7, "cpu")) for _ in range(2))
    other = backend.get_weights(backend.build(spec, 8, "cpu"))
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
