"""Shared fixtures: the real MNIST from ../shared/data/mnist, isolated caches and MLflow stores, the no-op
backend, and the rule that a registered backend that cannot load under CI is a failure, not a skip."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent
# Every committed spec: the default suite (specs/) and the 1998 paper's (paper1998/, hours of one-image updates).
SPEC_FOLDERS = [REPO / "specs", REPO / "paper1998"]
DEFAULT_MNIST = REPO.parent / "shared" / "data" / "mnist"
if str(TESTS) not in sys.path:  # spawned worker processes import noop_backend too
    sys.path.insert(0, str(TESTS))
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), os.environ.get("PYTHONPATH", "")) if p)


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


def session_cache(tmp_path_factory) -> Path:
    """The session's cache folder: under pytest-xdist one for all its workers (baselines are fitted under a file
    lock, so a fit made by one worker serves the others)."""
    base = tmp_path_factory.getbasetemp()
    return (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "cache"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache; the baseline and compilation caches are shared across tests of a session."""
    cache = session_cache(tmp_path_factory)
    monkeypatch.setenv("LENET_BENCH_CACHE_DIR", str(cache))
    # Keras on JAX runs in fresh processes (one per test module, workers, probes) that compile the same steps:
    # JAX's persistent compilation cache lets the later ones load what the first compiled (70 s -> 55 s for
    # the three modules' keras-jax bodies on 2 cores, from an empty cache).
    monkeypatch.setenv("JAX_COMPILATION_CACHE_DIR", str(cache / "jax"))
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    monkeypatch.setenv("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)


def pytest_collection_modifyitems(items):
    """keras-jax cases are slow: they run in a fresh process that imports Keras and JAX and compiles every
    step (10-20 s per test module); the fast lane leaves them to the full suite."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if params.get("backend") == "keras-jax":
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def noop():
    """The no-op backend, registered as 'noop' for one test."""
    import noop_backend

    from lenet_bench import backends

    backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
    noop_backend.TRAINED.clear()
    noop_backend.RELEASED.clear()
    for seeds in (noop_backend.FAIL_SEEDS, noop_backend.INTERRUPT_SEEDS, noop_backend.KILL_SEEDS,
                  noop_backend.SLOW_SEEDS, noop_backend.NAN_SEEDS, noop_backend.FILL_SEEDS):
        seeds.clear()
    yield noop_backend
    backends.unregister("noop")


def require_backend(name: str, device: str = "cpu"):
    """The backend set up for `device`; under CI (env CI set) a registered backend that cannot run on the
    CPU fails the test instead of skipping it, so a broken framework wheel never leaves CI green."""
    from lenet_bench import backends

    reason = backends.unavailable_reason(name, device)
    if reason:
        if os.environ.get("CI") and device == "cpu":
            pytest.fail(f"{name} backend unavailable under CI: {reason}")
        pytest.skip(f"{name} backend unavailable on {device}: {reason}")
    return backends.activate(name)
