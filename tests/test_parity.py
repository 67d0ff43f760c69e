"""The Keras and PyTorch backends compute the same network.

Given the same canonical weights, both must give the same logits on real MNIST images
(float32 rounding apart), and after a few identical optimizer steps through each
backend's own `train()` they must still hold the same weights.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import require_backend
from lenet_bench.data import prepare
from lenet_bench.spec import Spec, load_variants
from lenet_bench.training.result import SilentProgress

REPO = Path(__file__).resolve().parents[1]
PAIR = ("torch", "keras")
TEST_IMAGES = 256
TRAIN_STEPS = 5
LOGIT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# Logits measured: max |keras - torch| 8e-7 over every variant here (sigmoid nets the largest).
# Max |keras - torch| over all weights after 5 steps of LeNet-5 (batch 64), measured:
# SGD 1.5e-8 (with momentum, nesterov, weight decay and a cosine schedule too); Adam 9e-7.
# Adam divides by sqrt(v) + eps, so a weight whose gradient is near float32 noise takes an
# lr-sized step whose size depends on that noise; the gap grows with steps (2e-5 after 20).
# Each bound holds its measurement with a >10x margin and is far below one step's change
# (the largest weight moved 5e-3 to 3e-2 in these runs).
WEIGHT_TOLERANCE = {"sgd": 1e-6, "adam": 1e-5}


def _conv(filters, **options):
    return {"filters": filters, **options}


# (name, input size, model): every padding, pooling, activation and input size, the
# published LeNets, and a few shapes that trip layout conversions.
ARCHITECTURES = [
    ("lenet5-32", 32, {"conv": [_conv(6), _conv(16)], "dense": [120, 84]}),
    ("lenet5-dense400-32", 32, {"conv": [_conv(6), _conv(16)], "dense": [400, 120, 84]}),
    ("lenet-20-50-500-same", 28, {"conv": [_conv(20, padding="same"), _conv(50, padding="same")], "dense": [500]}),
    ("valid-max-relu-28", 28, {"conv": [_conv(6), _conv(16)], "dense": [84]}),
    ("same-avg-tanh-32", 32, {"conv": [_conv(6, padding="same"), _conv(16)], "dense": [120, 84],
                              "pool": "avg", "activation": "tanh"}),
    ("none-sigmoid-28", 28, {"conv": [_conv(4, kernel=5), _conv(8, kernel=5)], "dense": [32],
                             "pool": "none", "activation": "sigmoid"}),
    ("mixed-pools-32", 32, {"conv": [_conv(6, pool="avg", pool_size=3), _conv(16, kernel=3, pool="max")],
                            "dense": [64]}),
    # Even kernels pad unevenly under 'same'; strided 'valid' convolutions skip columns.
    ("even-kernel-same-28", 28, {"conv": [_conv(8, kernel=4, padding="same"), _conv(8, kernel=3, stride=2, pool="none")],
                                 "dense": [32], "activation": "tanh"}),
    ("dense-only-28", 28, {"dense": [64, 32]}),
]


def _arch_spec(name: str, size: int, model: dict, init: str = "glorot_uniform") -> Spec:
    return Spec.model_validate({"name": name, "data": {"input_size": size}, "model": {**model, "init": init}})


LENET5_MODEL = ARCHITECTURES[0][2]
PARITY_SPECS = (
    [_arch_spec(*arch) for arch in ARCHITECTURES]
    + [_arch_spec("lenet5-32-torch-init", 32, LENET5_MODEL, init="torch_default")]
    + [v.spec for v in load_variants([REPO / "specs"])]
)


@pytest.fixture(scope="module")
def pair():
    return tuple(require_backend(name) for name in PAIR)


def _prepare(raw, spec: Spec, subset: int):
    d = spec.data
    return prepare(raw, input_size=d.input_size, normalization=d.normalization,
                   validation_split=d.validation_split, subset=subset, test_subset=TEST_IMAGES)


def _test_images(raw, spec: Spec) -> np.ndarray:
    """Real MNIST test images at the spec's size; a colour model gets each digit in every channel."""
    x = _prepare(raw, spec, subset=1000).x_test
    return np.repeat(x, spec.model.in_channels, axis=1)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch: a speed note
@pytest.mark.parametrize("spec", PARITY_SPECS, ids=lambda s: s.name)
def test_same_weights_same_logits(pair, mnist_raw, spec):
    torch_backend, keras_backend = pair
    x = _test_images(mnist_raw, spec)
    torch_model, keras_model = (b.build(spec, 0, "cpu") for b in pair)
    for t, k in zip(torch_backend.get_weights(torch_model), keras_backend.get_weights(keras_model), strict=True):
        np.testing.assert_array_equal(k, t)
    expected = torch_backend.predict_logits(torch_model, x, "cpu")
    got = keras_backend.predict_logits(keras_model, x, "cpu")
    assert got.shape == expected.shape == (TEST_IMAGES, spec.model.num_classes)
    np.testing.assert_allclose(got, expected, **LOGIT_TOLERANCE)


OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05},
    "sgd-nesterov-wd-cosine": ({"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                               {"schedule": "cosine", "warmup_epochs": 0.4}),
    "adam": {"name": "adam"},
    "adam-wd-onecycle": ({"name": "adam", "lr": 0.002, "weight_decay": 1e-3, "beta1": 0.8, "eps": 1e-6},
                         {"schedule": "onecycle", "warmup_epochs": 0.4}),
}


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=str)
def test_same_steps_same_weights(pair, mnist_raw, optimizer):
    settings = OPTIMIZERS[optimizer]
    opt, schedule = settings if isinstance(settings, tuple) else (settings, {})
    spec = Spec.model_validate({
        "name": f"lenet5-32-{optimizer}", "data": {"input_size": 32}, "model": LENET5_MODEL,
        "train": {"optimizer": opt, "batch_size": 64, "epochs": 1, **schedule},
    })
    data = _prepare(mnist_raw, spec, subset=TRAIN_STEPS * 64 * 2)
    results = [b.train(b.build(spec, 0, "cpu"), spec, data, 0, "cpu", SilentProgress(), TRAIN_STEPS) for b in pair]
    (torch_backend, keras_backend), (torch_run, keras_run) = pair, results

    torch_weights = torch_backend.get_weights(torch_run.model)
    keras_weights = keras_backend.get_weights(keras_run.model)
    initial = torch_backend.get_weights(torch_backend.build(spec, 0, "cpu"))
    assert any(not np.array_equal(w, w0) for w, w0 in zip(torch_weights, initial)), "training did not move the weights"
    for k, t in zip(keras_weights, torch_weights, strict=True):
        np.testing.assert_allclose(k, t, rtol=0, atol=WEIGHT_TOLERANCE[opt["name"]])
    assert keras_run.history[0].train_loss == pytest.approx(torch_run.history[0].train_loss, rel=1e-5)
    assert keras_run.history[0].train_accuracy == torch_run.history[0].train_accuracy
