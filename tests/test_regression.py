"""Regression: LeNet-5 (6/16/120/84, ReLU) trained one epoch on the real MNIST beats 95%."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import require_backend

from lenet_bench import backends
from lenet_bench.engine.driver import Driver
from lenet_bench.engine.plan import RunOptions
from lenet_bench.results.row import Status
from lenet_bench.spec import load_variants

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("backend", backends.names())
def test_lenet5_one_epoch_above_95_percent(backend, mnist_dir, tmp_path):
    if not backends.host_conflict(backend):
        require_backend(backend)  # under CI a backend that should work and does not fails here
    [variant] = [v for v in load_variants([REPO / "specs"]) if v.name == "lenet5"]
    assert variant.spec.model.activation == "relu" and variant.spec.summary().params == 61_706
    options = RunOptions(data_dir=str(mnist_dir), tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
                         results_dir=tmp_path / "results", backends=(backend,), devices=("cpu",), epochs=1, seeds=(0,), live=False)
    [row] = Driver(options).run([variant], "regression")
    assert row.status is Status.COMPLETED, row.reason
    assert row.test_accuracy > 0.95
    assert row.baseline_accuracy < row.test_accuracy
