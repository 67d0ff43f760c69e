"""Every backend computes the same network as PyTorch.

Given the same canonical weights, each must give PyTorch's logits on real MNIST images
(float32 rounding apart), and after a few identical optimizer steps through each
backend's own `train()` they must still hold the same weights. The bodies
(parity_bodies.py) run in this process or, for a backend whose engine it cannot host
(Keras on JAX), in a fresh one (backend_cases.py); the comparisons run here.
"""

from __future__ import annotations

import numpy as np
import parity_bodies as bodies
import pytest
from backend_cases import body_result, case_runner  # noqa: F401 (fixtures)
from conftest import SPEC_FOLDERS
from parity_bodies import LENET5_MODEL, OPTIMIZERS, TEST_IMAGES

from lenet_bench import backends
from lenet_bench.spec import Spec, load_variants

REFERENCE = "torch"
COMPARED = [name for name in backends.names() if name != REFERENCE]  # each compared with PyTorch
BODIES = {  # each test's body (parity_bodies.py), for backend_cases.py
    "test_same_weights_same_logits": bodies.canonical_logits,
    "test_same_steps_same_weights": bodies.weights_after_steps,
    "test_batch_norm_trains_the_same": bodies.batch_norm_after_steps,
}
LOGIT_TOLERANCE = {"rtol": 1e-5, "atol": 1e-5}
# Logits measured: max |keras - torch| 8e-7 over every variant here (sigmoid nets the largest).
# Max |keras - torch| over all weights after 5 steps of LeNet-5 (batch 64), measured:
# SGD 1.5e-8 (with momentum, nesterov, weight decay and a cosine schedule too); Adam 9e-7.
# Adam divides by sqrt(v) + eps, so a weight whose gradient is near float32 noise takes an
# lr-sized step whose size depends on that noise; the gap grows with steps (2e-5 after 20).
# Each bound holds its measurement with a >10x margin and is far below one step's change
# (the largest weight moved 5e-3 to 3e-2 in these runs).
# keras-jax, measured the same way: logits 8e-7; SGD 1.6e-8; Adam 2.7e-6 (3.7x inside its
# bound): one weight of the first dense layer whose gradient is float32 noise, the case above
# (XLA and oneDNN round the gradient differently); 99.9% of weights agree within 1.2e-7.
WEIGHT_TOLERANCE = {"sgd": 1e-6, "adam": 1e-5}
# With batch norm, 5 SGD steps (lr 0.01), measured: max |keras - torch| 1.3e-7 over all weights; keras-jax 1.1e-6, on
# the bias of a convolution that batch norm follows: its gradient is zero but for float32 noise (the normalization
# takes the mean out), so its value is that noise summed.
BATCH_NORM_TOLERANCE = 1e-5


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
    # The layers form: batch norm on maps and on the flattened vector (whose features Keras orders (H, W, C)),
    # activations of their own, a strided convolution and a strided average pool, dropout (identity in inference).
    ("layers-bn-gelu-stride-28", 28, {"layers": bodies.BATCH_NORM_LAYERS}),
    ("layers-avg-stride-silu-32", 32, {"layers": [
        {"type": "conv", "filters": 6, "kernel": 5}, {"type": "activation", "fn": "silu"},
        {"type": "pool", "kind": "avg", "size": 3, "stride": 2}, {"type": "flatten"},
        {"type": "dense", "units": 32}, {"type": "activation", "fn": "sigmoid"},
        {"type": "dropout", "rate": 0.5}, {"type": "dense", "units": 10}]}),
]


def _arch_spec(name: str, size: int, model: dict, init: str = "glorot_uniform") -> Spec:
    return Spec.model_validate({"name": name, "data": {"input_size": size}, "model": {**model, "init": init}})


PARITY_SPECS = (
    [_arch_spec(*arch) for arch in ARCHITECTURES]
    + [_arch_spec("lenet5-32-torch-init", 32, LENET5_MODEL, init="torch_default")]
    + [v.spec for v in load_variants(SPEC_FOLDERS)]
)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel:UserWarning")  # torch: a speed note
@pytest.mark.parametrize("spec", PARITY_SPECS, ids=lambda s: s.name)
@pytest.mark.parametrize("backend", COMPARED)
def test_same_weights_same_logits(backend, spec, body_result):
    torch_weights, expected = body_result(REFERENCE)
    weights, got = body_result(backend)
    for w, t in zip(weights, torch_weights, strict=True):
        np.testing.assert_array_equal(w, t)
    assert got.shape == expected.shape == (TEST_IMAGES, spec.model.num_classes)
    np.testing.assert_allclose(got, expected, **LOGIT_TOLERANCE)


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", OPTIMIZERS, ids=str)
@pytest.mark.parametrize("backend", COMPARED)
def test_same_steps_same_weights(backend, optimizer, body_result):
    torch_run, run = body_result(REFERENCE), body_result(backend)
    assert any(not np.array_equal(w, w0) for w, w0 in zip(torch_run["trained"], torch_run["initial"])), \
        "training did not move the weights"
    tolerance = WEIGHT_TOLERANCE[bodies.optimizer_spec(optimizer).train.optimizer.name]
    for w, t in zip(run["trained"], torch_run["trained"], strict=True):
        np.testing.assert_allclose(w, t, rtol=0, atol=tolerance)
    assert run["train_loss"] == pytest.approx(torch_run["train_loss"], rel=1e-5)
    assert run["train_accuracy"] == torch_run["train_accuracy"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", COMPARED)
def test_batch_norm_trains_the_same(backend, body_result):
    """Batch norm is deterministic in training (the batch's own statistics): the same steps give the same weights
    on every backend, scale and shift included. Its running statistics are not compared: PyTorch keeps the
    unbiased variance, Keras the biased one (n / (n - 1) apart)."""
    torch_run, run = body_result(REFERENCE), body_result(backend)
    assert any(not np.array_equal(w, w0) for w, w0 in zip(torch_run["trained"], torch_run["initial"]))
    for w, t in zip(run["trained"], torch_run["trained"], strict=True):
        np.testing.assert_allclose(w, t, rtol=0, atol=BATCH_NORM_TOLERANCE)
    assert run["train_loss"] == pytest.approx(torch_run["train_loss"], rel=1e-5)
