"""Architecture arithmetic: known counts, and agreement with PyTorch's own counts and shapes."""

from __future__ import annotations

import itertools
import subprocess
import sys

import pytest
import torch

from lenet_bench import backends
from lenet_bench.spec import ModelSpec, Spec, arch

LENET5 = {"conv": [{"filters": 6}, {"filters": 16}, {"filters": 120, "pool": "none"}], "dense": [84]}
LENET_20_50 = {"conv": [{"filters": 20, "padding": "same"}, {"filters": 50, "padding": "same"}], "dense": [500]}
LENET5_400 = {"conv": [{"filters": 6}, {"filters": 16}], "dense": [400, 120, 84]}


def make_spec(model: dict, input_size: int = 32, **model_extra) -> Spec:
    return Spec.model_validate({"name": "t", "data": {"input_size": input_size}, "model": {**model, **model_extra}})


@pytest.mark.parametrize("model, input_size, params", [
    (LENET5, 32, 61_706),
    (LENET_20_50, 28, 1_256_080),
    (LENET5_400, 32, 222_106),
])
def test_published_parameter_counts(model, input_size, params):
    assert make_spec(model, input_size).summary().params == params


def test_lenet5_forward_flops():
    # conv1 6*28*28*25 + conv2 16*10*10*150 + conv3 120*400 + 120*84 + 84*10 MACs.
    macs = 117_600 + 240_000 + 48_000 + 10_080 + 840
    summary = make_spec(LENET5).summary()
    assert summary.macs == macs and summary.flops == 2 * macs
    assert summary.train_flops == 3 * 2 * macs  # about 2.5 MFLOP per training image


def test_output_shapes_follow_padding_and_pooling():
    layers = {layer.name: layer.output_shape for layer in make_spec(LENET_20_50, 28).summary().layers}
    assert layers["conv1"] == (20, 28, 28) and layers["maxpool1"] == (20, 14, 14)
    assert layers["conv2"] == (50, 14, 14) and layers["maxpool2"] == (50, 7, 7)
    assert layers["flatten"] == (2450,)


def test_impossible_shape_names_the_layer():
    model = ModelSpec.model_validate({"conv": [{"filters": 6}, {"filters": 16}, {"filters": 8, "kernel": 9}]})
    with pytest.raises(arch.ShapeError) as caught:
        arch.describe(model, (1, 32, 32))
    assert caught.value.field == "model.conv.2.kernel"


VARIANTS = [
    (model, size, activation, pool, init)
    for (model, size), activation, pool, init in itertools.product(
        [(LENET5, 32), (LENET5, 28), (LENET_20_50, 28), (LENET_20_50, 32), (LENET5_400, 32)],
        ["relu", "tanh"], ["max", "avg"], ["glorot_uniform", "framework"])
]


@pytest.mark.parametrize("model, size, activation, pool, init", VARIANTS)
def test_torch_counts_and_shapes_equal_analytic(model, size, activation, pool, init):
    if size == 28 and model is LENET5:
        model = {**model, "conv": [{"filters": 6, "padding": "same"}] + model["conv"][1:]}
    spec = make_spec(model, size, activation=activation, pool=pool, init=init)
    torch_backend = backends.activate("torch")
    module = torch_backend.build(spec, seed=0, device="cpu")
    assert torch_backend.count_params(module) == spec.summary().params
    # One child per described layer, and every output has the analytic shape.
    shapes, x = [], torch.zeros(2, *spec.input_shape)
    for child in module:
        x = child(x)
        shapes.append(tuple(x.shape[1:]))
    assert shapes == [layer.output_shape for layer in spec.summary().layers]


def test_arch_imports_no_framework():
    code = "import sys, lenet_bench.spec, lenet_bench.engine.plan, lenet_bench.training.weights; " \
           "print(sorted(m for m in ('torch', 'tensorflow', 'keras', 'mlflow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
