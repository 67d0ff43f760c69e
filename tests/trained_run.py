"""Runs in temporary MLflow stores, made once per test session and shared by test_predict and test_serve.

`quick_torch_run`: a PyTorch LeNet-5 with its saved model (the committed specs/lenet5.yaml, one
epoch on the first 20,000 MNIST training images, seed 0: about 93% test accuracy).
`noop_run`: a completed run of the no-op backend, which saves no model (call it with the `noop`
fixture active). Later calls in the same session return the same run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import REPO, require_backend, session_cache

from lenet_bench.cli import main

_TRAINED: dict[tuple[Path, str], TrainedStore] = {}
NOOP_SPEC = """
name: tiny
data: {subset: 2000, test_subset: 500}
model: {conv: [{filters: 4}], dense: [8]}
train: {optimizer: {name: sgd}, epochs: 1, seeds: [0]}
backends: [noop]
expect: {min_test_accuracy: 0.0}
"""


@dataclass(frozen=True)
class TrainedStore:
    root: Path
    tracking_uri: str
    run_name: str


def quick_torch_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> TrainedStore:
    if (tmp_path_factory.getbasetemp(), "torch") not in _TRAINED:
        require_backend("torch")
    return _stored_run(tmp_path_factory, "torch", [
        str(REPO / "specs"), "--only", "lenet5", "--backend", "torch", "--device", "cpu", "--epochs", "1",
        "--seed", "0", "--subset", "20000", "--data-dir", str(mnist_dir)])


def noop_run(tmp_path_factory: pytest.TempPathFactory, mnist_dir: Path) -> TrainedStore:
    specs = tmp_path_factory.getbasetemp() / "noop_specs"
    specs.mkdir(exist_ok=True)
    (specs / "tiny.yaml").write_text(NOOP_SPEC)
    return _stored_run(tmp_path_factory, "noop", [str(specs), "--data-dir", str(mnist_dir)])


def _stored_run(tmp_path_factory: pytest.TempPathFactory, key: str, arguments: list[str]) -> TrainedStore:
    base = tmp_path_factory.getbasetemp()
    if (base, key) not in _TRAINED:
        root = tmp_path_factory.mktemp(f"{key}_store")
        uri = f"sqlite:///{root}/mlflow.db"
        # Session scope runs before the function-scoped isolated_cache fixture: isolate it here too.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LENET_BENCH_CACHE_DIR", str(session_cache(tmp_path_factory)))
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            code = main(["run", *arguments, "--tracking-uri", uri, "--results", str(root / "results")])
        assert code == 0, f"the {key} run failed"
        _TRAINED[base, key] = TrainedStore(root, uri, _run_name(uri))
    return _TRAINED[base, key]


def _run_name(tracking_uri: str) -> str:
    from lenet_bench.results.row import KIND_TAG
    from lenet_bench.results.tracking import Tracker

    tracker = Tracker(tracking_uri, create=False)
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    runs = tracker.search(f"tags.`{KIND_TAG}` = 'run'", experiments)
    assert len(runs) == 1, [r.info.run_name for r in runs]
    return runs[0].info.run_name
