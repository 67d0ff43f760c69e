"""Shared fixtures: the real MNIST from ../shared/data/mnist, isolated caches and MLflow stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    path = Path(os.environ.get("LENET_BENCH_TEST_DATA", DEFAULT_MNIST))
    if not path.is_dir():
        pytest.fail(f"real MNIST not found at {path}; set LENET_BENCH_TEST_DATA to the folder of the IDX .gz files")
    return path


@pytest.fixture(scope="session")
def mnist_raw(mnist_dir):
    from lenet_bench.data import load_dataset

    return load_dataset("mnist", mnist_dir, download=False)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache; the baseline cache is shared across tests of a session."""
    monkeypatch.setenv("LENET_BENCH_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
