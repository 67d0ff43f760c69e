"""The bodies of test_layers.py's backend tests: each runs one backend, by name, and returns plain data (see
backend_cases.py: Keras on JAX runs them in a fresh process)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from parity_bodies import mnist, prepared

from lenet_bench import backends
from lenet_bench.spec import Spec
from lenet_bench.training.result import SilentProgress

# The example: batch norm, gelu, a stride-2 convolution, dropout, every layer written out.
LAYERED = {
    "name": "layered", "data": {"input_size": 28},
    "model": {"layers": [
        {"type": "conv", "filters": 6, "kernel": 5, "padding": "same"}, {"type": "batch_norm"},
        {"type": "activation", "fn": "gelu"}, {"type": "pool", "kind": "max", "size": 2},
        {"type": "conv", "filters": 16, "kernel": 5, "stride": 2}, {"type": "activation", "fn": "relu"},
        {"type": "flatten"}, {"type": "dense", "units": 120}, {"type": "activation", "fn": "relu"},
        {"type": "dropout", "name": "drop1", "rate": 0.5}, {"type": "dense", "units": 10}]},
    "train": {"optimizer": {"name": "adam"}, "batch_size": 64},
}
TRAIN_STEPS = 4


def inference_after_training(name: str, mnist_dir: Path) -> dict[str, Any]:
    """A few training steps (batch norm's running statistics move, dropout drops), then inference three ways."""
    backend = backends.activate(name)
    spec = Spec.model_validate(LAYERED)
    data = prepared(mnist(mnist_dir), spec, subset=TRAIN_STEPS * 64 * 2)
    run = backend.train(backend.build(spec, 0, "cpu"), spec, data, 0, "cpu", SilentProgress(), TRAIN_STEPS)
    images = data.x_test[:16]
    return {
        "params": backend.count_params(run.model), "initial_params": backend.count_params(backend.build(spec, 0, "cpu")),
        "twice": [backend.predict_logits(run.model, images, "cpu") for _ in range(2)],
        "alone": backend.predict_logits(run.model, images[:1], "cpu"),
        "layer_shapes": [list(np.shape(out)) for out in backend.layer_outputs(run.model, images[:2])],
        "train_loss": run.history[0].train_loss,
    }
