"""The PyTorch backend pools before the activation where that is the same network.

Max pooling commutes with a non-decreasing activation, so the harness applies ReLU,
sigmoid or tanh after the max pool (a quarter of the values). The bench's plain loop keeps
the textbook order. Both must give the same logits and the same gradients on real images.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from lenet_bench.backends.torch import model as torch_model
from lenet_bench.data import prepare
from lenet_bench.spec import Spec
from lenet_bench.training.weights import initial_weights

IMAGES = 64


def _spec(activation: str, pool: str) -> Spec:
    return Spec.model_validate({
        "name": f"lenet5-{activation}-{pool}", "data": {"input_size": 32},
        "model": {"conv": [{"filters": 6}, {"filters": 16}], "dense": [120, 84], "activation": activation, "pool": pool},
    })


def _layer_kinds(module: nn.Sequential) -> list[str]:
    return [type(layer).__name__ for layer in module.modules() if not isinstance(layer, nn.Sequential)]


@pytest.fixture(scope="module")
def images(mnist_raw):
    return torch.from_numpy(prepare(mnist_raw, input_size=32, subset=IMAGES, test_subset=IMAGES).x_test)


def test_max_pool_runs_before_the_activation_avg_pool_after():
    assert _layer_kinds(torch_model.build_module(_spec("relu", "max")))[:3] == ["Conv2d", "MaxPool2d", "ReLU"]
    assert _layer_kinds(torch_model.build_module(_spec("relu", "max"), max_pool_first=False))[:3] == \
        ["Conv2d", "ReLU", "MaxPool2d"]
    assert _layer_kinds(torch_model.build_module(_spec("tanh", "avg")))[:3] == ["Conv2d", "Tanh", "AvgPool2d"]


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_pool_first_is_the_same_network(activation, images):
    spec = _spec(activation, "max")
    weights = initial_weights(spec.summary(), "glorot_uniform", seed=0)
    labels = torch.arange(len(images)) % 10
    results = []
    for max_pool_first in (True, False):
        module = torch_model.build_module(spec, max_pool_first=max_pool_first)
        torch_model.set_weights(module, weights)
        logits = module(images)
        nn.functional.cross_entropy(logits, labels).backward()
        results.append((logits.detach().numpy(), [p.grad.numpy() for p in module.parameters()]))
    (fast_logits, fast_grads), (textbook_logits, textbook_grads) = results
    np.testing.assert_allclose(fast_logits, textbook_logits, rtol=1e-6, atol=1e-6)
    for fast, textbook in zip(fast_grads, textbook_grads, strict=True):
        np.testing.assert_allclose(fast, textbook, rtol=1e-5, atol=1e-6)
