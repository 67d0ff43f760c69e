"""Every registered backend honours the protocol (backends/protocol.py).

Each test runs once per name in the registry. Its body (conformance_bodies.py) runs in this
process or, for a backend whose engine this process cannot host (Keras on JAX beside Keras on
TensorFlow), in a fresh one with the module's other bodies for that backend (backend_cases.py);
the assertions run here. A backend that cannot run here is skipped with the registry's own
reason (under CI, it fails), never silently left out.
"""

from __future__ import annotations

import math

import conformance_bodies as bodies
import numpy as np
import pytest
from backend_cases import body_result, case_runner  # noqa: F401 (fixtures)
from conformance_bodies import MAX_STEPS, SMALL
from conftest import SPEC_FOLDERS

from lenet_bench import backends
from lenet_bench.spec import Spec, load_variants
from lenet_bench.training.result import RunResult
from lenet_bench.training.weights import initial_weights

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

_spec = bodies.spec_of

BODIES = {  # each test's body (conformance_bodies.py), for backend_cases.py
    "test_protocol_constants": bodies.protocol_constants,
    "test_mlflow_save_options_pin_the_framework": bodies.mlflow_save_options,
    "test_model_saved_by_mlflow_predicts_the_same": bodies.mlflow_round_trip,
    "test_param_count_is_analytic": bodies.param_counts,
    "test_build_loads_canonical_initial_weights": bodies.built_weights,
    "test_weights_round_trip": bodies.weights_round_trip,
    "test_predict_logits_shape": bodies.predicted_logits,
    "test_short_training_run": bodies.short_training_run,
    "test_same_seed_same_weights": bodies.same_seed_weights,
    "test_framework_init_is_seeded": bodies.framework_init_weights,
}


def _param_count_specs() -> list[Spec]:
    return [v.spec for v in load_variants(SPEC_FOLDERS)] + [_spec(LENET5), _spec(LENET_20_50_500_SAME)]


@pytest.fixture(params=backends.names())
def backend(request) -> str:
    """A registered backend's name: each test asks `body_result(backend)` for its body's result."""
    return request.param


@pytest.fixture(scope="session")
def small_data(mnist_dir):
    return bodies.small_data(mnist_dir)


def test_protocol_constants(backend, body_result):
    found = body_result(backend)
    assert found["NAME"] == backend
    assert isinstance(found["MLFLOW_FLAVOR"], str) and found["MLFLOW_FLAVOR"]  # an mlflow.<flavor> module
    assert isinstance(found["framework_version"], str) and found["framework_version"]
    assert found["cpu_reason"] is None
    gpu_reason = found["gpu_reason"]
    assert gpu_reason is None or (isinstance(gpu_reason, str) and gpu_reason)


def test_mlflow_save_options_pin_the_framework(backend, body_result):
    options = body_result(backend)
    assert isinstance(options, dict)
    for distribution in backends.entry(backend).distributions:  # "a|b": the same module under either name
        assert any(req.startswith(f"{name}==") for name in distribution.split("|")
                   for req in options["pip_requirements"]), f"{distribution} not pinned in {options}"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy:DeprecationWarning")  # Keras' saver
def test_model_saved_by_mlflow_predicts_the_same(backend, body_result):
    # predict/ reloads a logged model with MLflow and hands it back to predict_logits.
    reloaded_logits, logits = body_result(backend)
    np.testing.assert_array_equal(reloaded_logits, logits)


def test_published_counts_are_the_analytic_ones():
    for raw in (LENET5, LENET_20_50_500_SAME):
        assert _spec(raw).summary().params == PUBLISHED_PARAMS[raw["name"]]


@pytest.mark.parametrize("spec", _param_count_specs(), ids=lambda s: s.name)
def test_param_count_is_analytic(backend, spec, body_result):
    assert body_result(backend) == {"glorot_uniform": spec.summary().params, "framework": spec.summary().params}


@pytest.mark.parametrize("scheme", ["glorot_uniform", "torch_default"])
def test_build_loads_canonical_initial_weights(backend, scheme, body_result):
    spec = _spec({**SMALL, "model": {**SMALL["model"], "init": scheme}})
    expected = initial_weights(spec.summary(), scheme, seed=3)
    for got, want in zip(body_result(backend), expected, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("raw", [SMALL, LENET5, {"name": "dense-only", "model": {"dense": [16]}}],
                         ids=lambda raw: raw["name"])
def test_weights_round_trip(backend, raw, body_result):
    got_weights, refused_one_short = body_result(backend)
    for got, want in zip(got_weights, bodies.round_trip_weights(_spec(raw)), strict=True):
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, want)
    assert refused_one_short, "set_weights accepted a list one array short (expected a ValueError)"


def test_predict_logits_shape(backend, body_result):
    logits = body_result(backend)
    assert logits.shape == (5, 10) and logits.dtype == np.float32 and np.isfinite(logits).all()


def test_short_training_run(backend, small_data, body_result):
    spec = _spec(SMALL)
    found = body_result(backend)
    result, progress = found["result"], found["progress"]

    assert isinstance(result, RunResult)
    assert (result.backend, result.device) == (backend, "cpu")
    assert result.framework_version == found["framework_version"]
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
    assert found["trained_model_params"] == result.params  # count_params of the model train() returned


def test_same_seed_same_weights(backend, body_result):
    first, second = body_result(backend)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_framework_init_is_seeded(backend, body_result):
    first, second, other = body_result(backend)
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))
