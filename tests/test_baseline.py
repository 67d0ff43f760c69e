"""lenet_bench.baseline: logistic regression on pixels, cached on disk per data key and settings."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from lenet_bench.data import load_dataset, prepare
from lenet_bench.engine.baseline import logistic_regression_baseline


def mnist_dir() -> Path:
    """Real MNIST: $LENET_BENCH_TEST_DATA, else shared/data/mnist beside the repository."""
    return Path(os.environ.get("LENET_BENCH_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared/data/mnist")


@pytest.fixture(scope="module")
def mnist():
    return load_dataset("mnist", mnist_dir(), download=False)


def test_trains_once_then_reads_the_cache(mnist, tmp_path):
    data = prepare(mnist, input_size=28, subset=5000)
    first = logistic_regression_baseline(data, tmp_path)
    assert first.test_accuracy > 0.85
    assert not first.cached and first.n_train == 5000 and first.key == data.key
    assert first.description.startswith("LogisticRegression(lbfgs") and "784 pixels" in first.description

    (path,) = (tmp_path / "baselines").glob("*.json")
    record = json.loads(path.read_text())
    assert path.name.startswith(data.key) and record["test_accuracy"] == first.test_accuracy
    assert len(record["per_class_accuracy"]) == 10 and record["settings"]["max_iter"] == 100

    second = logistic_regression_baseline(data, tmp_path)
    assert second.cached
    assert (second.test_accuracy, second.train_seconds) == (first.test_accuracy, first.train_seconds)


def test_other_data_or_settings_get_their_own_entry(mnist, tmp_path):
    small = prepare(mnist, input_size=28, subset=1000, test_subset=1000)
    padded = prepare(mnist, input_size=32, subset=1000, test_subset=1000)
    results = [logistic_regression_baseline(small, tmp_path, max_iter=20),
               logistic_regression_baseline(small, tmp_path, max_iter=30),
               logistic_regression_baseline(padded, tmp_path, max_iter=20)]
    assert not any(r.cached for r in results)
    assert "1024 pixels" in results[2].description
    # The padding never varies: left out, the padded images fit the very pixels the unpadded ones do.
    assert results[2].test_accuracy == results[0].test_accuracy
    assert len(list((tmp_path / "baselines").glob("*.json"))) == 3
    assert logistic_regression_baseline(small, tmp_path, max_iter=30).cached


def test_unreadable_cache_entry_is_recomputed(mnist, tmp_path):
    data = prepare(mnist, input_size=28, subset=500, test_subset=500)
    logistic_regression_baseline(data, tmp_path, max_iter=10)
    (path,) = (tmp_path / "baselines").glob("*.json")
    path.write_text("{truncated")
    assert not logistic_regression_baseline(data, tmp_path, max_iter=10).cached
    assert json.loads(path.read_text())["n_train"] == 500
