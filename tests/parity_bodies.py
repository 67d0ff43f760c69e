"""The bodies of test_parity.py: each runs one backend, by name, and returns plain data, so that it runs in
the test process or in a fresh one (backend_cases.py); the tests compare the backends."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from lenet_bench import backends
from lenet_bench.data import PreparedData, RawDataset, load_dataset, prepare
from lenet_bench.spec import Spec
from lenet_bench.training.result import SilentProgress

TEST_IMAGES = 256
TRAIN_STEPS = 5
LENET5_MODEL = {"conv": [{"filters": 6}, {"filters": 16}], "dense": [120, 84]}
OPTIMIZERS = {
    "sgd": {"name": "sgd", "lr": 0.05},
    "sgd-nesterov-wd-cosine": ({"name": "sgd", "lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4},
                               {"schedule": "cosine", "warmup_epochs": 0.4}),
    "adam": {"name": "adam"},
    "adam-wd-onecycle": ({"name": "adam", "lr": 0.002, "weight_decay": 1e-3, "beta1": 0.8, "eps": 1e-6},
                         {"schedule": "onecycle", "warmup_epochs": 0.4}),
}
# Batch norm after convolutions and after the flatten, activations of their own, a stride-2 convolution.
BATCH_NORM_LAYERS = [
    {"type": "conv", "filters": 6, "kernel": 5, "padding": "same"}, {"type": "batch_norm"},
    {"type": "activation", "fn": "gelu"}, {"type": "pool", "kind": "max", "size": 2},
    {"type": "conv", "filters": 16, "kernel": 5, "stride": 2}, {"type": "batch_norm", "momentum": 0.2},
    {"type": "activation", "fn": "leaky_relu", "slope": 0.1}, {"type": "flatten"},
    {"type": "batch_norm", "epsilon": 1e-3}, {"type": "dense", "units": 64}, {"type": "activation", "fn": "elu"},
    {"type": "dense", "units": 10}]


@cache
def mnist(mnist_dir: Path) -> RawDataset:
    return load_dataset("mnist", mnist_dir, download=False)


def prepared(raw: RawDataset, spec: Spec, subset: int) -> PreparedData:
    d = spec.data
    return prepare(raw, input_size=d.input_size, normalization=d.normalization,
                   validation_split=d.validation_split, subset=subset, test_subset=TEST_IMAGES)


def real_images(raw: RawDataset, spec: Spec) -> np.ndarray:
    """Real MNIST test images at the spec's size; a colour model gets each digit in every channel."""
    x = prepared(raw, spec, subset=1000).x_test
    return np.repeat(x, spec.model.in_channels, axis=1)


def optimizer_spec(optimizer: str) -> Spec:
    """LeNet-5 trained with OPTIMIZERS[optimizer] (and its schedule), batch 64."""
    settings = OPTIMIZERS[optimizer]
    opt, schedule = settings if isinstance(settings, tuple) else (settings, {})
    return Spec.model_validate({
        "name": f"lenet5-32-{optimizer}", "data": {"input_size": 32}, "model": LENET5_MODEL,
        "train": {"optimizer": opt, "batch_size": 64, "epochs": 1, **schedule},
    })


def canonical_logits(name: str, spec: Spec, mnist_dir: Path) -> tuple[list[np.ndarray], np.ndarray]:
    """(the built model's weights, its logits on TEST_IMAGES real test images)."""
    backend = backends.activate(name)
    model = backend.build(spec, 0, "cpu")
    return backend.get_weights(model), backend.predict_logits(model, real_images(mnist(mnist_dir), spec), "cpu")


def weights_after_steps(name: str, optimizer: str, mnist_dir: Path) -> dict[str, Any]:
    """Initial and trained weights, and the first epoch's loss and accuracy, after TRAIN_STEPS steps of `optimizer`."""
    backend = backends.activate(name)
    spec = optimizer_spec(optimizer)
    data = prepared(mnist(mnist_dir), spec, subset=TRAIN_STEPS * 64 * 2)
    run = backend.train(backend.build(spec, 0, "cpu"), spec, data, 0, "cpu", SilentProgress(), TRAIN_STEPS)
    return {"initial": backend.get_weights(backend.build(spec, 0, "cpu")), "trained": backend.get_weights(run.model),
            "train_loss": run.history[0].train_loss, "train_accuracy": run.history[0].train_accuracy}


def batch_norm_after_steps(name: str, mnist_dir: Path) -> dict[str, Any]:
    """Initial and trained weights after TRAIN_STEPS steps of SGD through a network with batch norm."""
    backend = backends.activate(name)
    spec = Spec.model_validate({"name": "bn-sgd", "data": {"input_size": 28}, "model": {"layers": BATCH_NORM_LAYERS},
                                "train": {"optimizer": {"name": "sgd", "lr": 0.01}, "batch_size": 64}})
    data = prepared(mnist(mnist_dir), spec, subset=TRAIN_STEPS * 64 * 2)
    run = backend.train(backend.build(spec, 0, "cpu"), spec, data, 0, "cpu", SilentProgress(), TRAIN_STEPS)
    return {"initial": backend.get_weights(backend.build(spec, 0, "cpu")), "trained": backend.get_weights(run.model),
            "train_loss": run.history[0].train_loss}
