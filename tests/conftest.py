"""Shared fixtures: the real MNIST from ../shared/data/mnist, isolated caches and MLflow stores, the no-op
backend, and the rule that a registered backend that cannot load under CI is a failure, not a skip."""

from __future__ import annotations

import gc
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


@pytest.fixture(autouse=True)
def earlier_objects_frozen():
    """What the process held before a test (three frameworks' modules, earlier tests' objects) is out of the
    collector's way while it runs, as `run` freezes the frameworks after importing them (backends/__init__.py):
    every full collection a test causes (statsmodels' Holm runs one per call, each PyTorch run's release one)
    otherwise walks that whole heap, 0.5-1.7 s each. What the test itself makes is collected as usual."""
    gc.freeze()
    yield
    gc.unfreeze()


_MIGRATED_STORE: list[Path] = []  # this test process's empty store that MLflow migrated itself


@pytest.fixture(autouse=True)
def new_mlflow_stores_start_from_a_migrated_copy(monkeypatch, tmp_path_factory):
    """MLflow builds a new SQLite store migration by migration (2-3 s); the suite's few hundred new stores
    instead receive a copy of one store MLflow built itself in this process, through SQLite's backup API (under
    SQLite's own locks, rolled back if it fails). A store that cannot be written (a full disk, a read-only
    folder) fails as before: MLflow's own initialization runs whenever the copy does not go through. Stores
    of CLI processes the tests start are built by MLflow as usual."""
    import sqlite3
    from contextlib import closing

    import sqlalchemy
    from mlflow.store.db import utils as mlflow_db

    build = mlflow_db._initialize_tables

    def migrated_store() -> Path:
        if not _MIGRATED_STORE:
            path = tmp_path_factory.mktemp("mlflow-migrated") / "mlflow.db"
            engine = sqlalchemy.create_engine(f"sqlite:///{path}")
            build(engine)
            engine.dispose()
            _MIGRATED_STORE.append(path)
        return _MIGRATED_STORE[0]

    def initialize(engine):
        database = engine.url.database
        if engine.url.get_backend_name() == "sqlite" and database and database != ":memory:":
            try:
                with closing(sqlite3.connect(migrated_store())) as source, closing(sqlite3.connect(database)) as target:
                    source.backup(target)
                return
            except sqlite3.Error:
                pass
        build(engine)

    monkeypatch.setattr(mlflow_db, "_initialize_tables", initialize)


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
