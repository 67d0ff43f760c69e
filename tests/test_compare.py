"""`compare` and `report` on a small results folder (and its MLflow store) made by the runner with the no-op backend."""

from __future__ import annotations

import json
import math
import shutil
import textwrap
from pathlib import Path

import pandas as pd
import pytest
from conftest import session_cache
from mlflow.tracking import MlflowClient

from lenet_bench import backends
from lenet_bench.cli import main
from lenet_bench.results import compare, figures
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.readback import load_histories
from lenet_bench.results.table import ResultsFolder
from lenet_bench.results.tracking import Tracker
from lenet_bench.training.result import EpochRecord

EXPERIMENT = "lenet_bench/specs"
# Two variants (4 and 6 filters in the first conv) x two seeds; the gpu runs are skipped by the no-op backend.
SPEC = """
name: tiny
description: compare test
data: {subset: 2000, test_subset: 500, validation_split: 0.1}
model:
  conv: [{filters: 4}, {filters: 8}]
  dense: [16]
matrix:
  model.conv.0.filters: [4, 6]
train: {optimizer: {name: sgd}, epochs: 2, seeds: [0, 1]}
backends: [noop]
devices: [cpu, gpu]
expect: {min_test_accuracy: 0.05}
"""


@pytest.fixture(scope="module")
def store(tmp_path_factory, mnist_dir):
    """tracking URI of a store with 4 completed runs, 4 skipped ones, and tiny-4 run twice (--force); its results
    folder is `results` beside it."""
    root = tmp_path_factory.mktemp("compare_store")
    (root / "specs").mkdir()
    (root / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    uri = f"sqlite:///{root}/mlflow.db"
    backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LENET_BENCH_CACHE_DIR", str(session_cache(tmp_path_factory)))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        common = [str(root / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri", uri, "--results", str(root / "results")]
        assert main(["run", *common]) == 0
        assert main(["run", *common, "--only", "tiny-4", "--force"]) == 0
    backends.unregister("noop")
    return uri


def command(*argv: str) -> int:
    """The two commands as the CLI runs them."""
    return main(list(argv))


def results_of(store: str) -> str:
    return store.removeprefix("sqlite:///").replace("mlflow.db", "results")


def test_the_table_keeps_one_row_per_run_the_newest_of_a_rerun(store):
    table = pd.read_csv(f"{results_of(store)}/runs.csv")
    completed = table[table["status"] == "completed"]
    assert list(completed["run"]) == ["tiny-4/noop/cpu/seed0", "tiny-4/noop/cpu/seed1",
                                      "tiny-6/noop/cpu/seed0", "tiny-6/noop/cpu/seed1"]  # no repeats
    assert set(table[table["status"] != "completed"]["device"]) == {"gpu"}


def compare_json(store: str, capsys, *argv: str) -> dict:
    assert command("compare", results_of(store), *argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def test_compare_gives_one_group_per_variant_with_its_seeds_mean_and_exits_0(store, capsys):
    document = compare_json(store, capsys)
    rows = [r for r in ResultsFolder(Path(results_of(store))).read() if r.status.has_numbers]
    assert document["completed_runs"] == len(rows) == 4 and document["by"] == list(compare.DEFAULT_GROUPING)
    groups = {group["setup"]: group for group in document["groups"]}
    assert sorted(groups) == ["tiny-4", "tiny-6"]
    for setup, group in groups.items():
        accuracies = [r.test_accuracy for r in rows if r.spec == setup]
        assert (group["backend"], group["device"], group["n"]) == ("noop", "cpu", 2), "two seeds per variant"
        assert group["test_accuracy_mean"] == pytest.approx(sum(accuracies) / 2)
        assert group["test_accuracy_ci_low"] <= group["test_accuracy_mean"] <= group["test_accuracy_ci_high"]
    assert [g["test_accuracy_mean"] for g in document["groups"]] == sorted(
        (g["test_accuracy_mean"] for g in document["groups"]), reverse=True), "best first"

    # The table prints the same groups, accuracy as a percentage.
    assert command("compare", results_of(store)) == 0
    out = capsys.readouterr().out
    for setup, group in groups.items():
        line = next(line for line in out.splitlines() if setup in line)
        assert f"{100 * group['test_accuracy_mean']:.2f}" in line
    assert "95% Student-t CI" in out


def test_compare_by_another_column(store, capsys):
    (group,) = compare_json(store, capsys, "--by", "backend,activation")["groups"]
    assert (group["backend"], group["activation"], group["n"]) == ("noop", "relu", 4)


def test_compare_by_an_unknown_column_is_exit_2(store, capsys):
    assert command("compare", results_of(store), "--by", "setup,colour") == 2
    assert "cannot group by colour" in capsys.readouterr().err


def test_a_folder_without_a_table_is_exit_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nothing"
    for argv in (["compare", str(missing)], ["report", "--results", str(missing)]):
        assert command(*argv) == 2
        assert f"{missing}/runs.csv not found" in " ".join(capsys.readouterr().err.split())
        assert not missing.exists(), "a command that reads a table makes no folder"


def test_a_table_without_completed_runs_is_exit_2(store, tmp_path, capsys):
    table = pd.read_csv(f"{results_of(store)}/runs.csv")
    table[table["status"] != "completed"].to_csv(tmp_path / "runs.csv", index=False)
    for argv in (["compare", str(tmp_path)], ["report", "--results", str(tmp_path), "--tracking-uri", store]):
        assert command(*argv) == 2
        assert "has no completed runs" in " ".join(capsys.readouterr().err.split())


def test_report_draws_a_folders_reports_again_from_its_table(store, tmp_path, capsys):
    results = tmp_path / "results"
    shutil.copytree(results_of(store), results)
    for name in ("summary.md", "compare.md", "accuracy_vs_params.png"):
        (results / name).unlink()
    before = pd.read_csv(results / "runs.csv")
    assert command("report", "--tracking-uri", store, "--results", str(results)) == 0
    assert pd.read_csv(results / "runs.csv").equals(before), "the table is what report reads, not what it writes"
    assert "tiny-6" in (results / "summary.md").read_text()
    assert "| tiny-4 |" in (results / "compare.md").read_text().replace("  ", " ")
    for name in ("accuracy_vs_params.png", "accuracy_vs_time.png", "backend_comparison.png",
                 "learning_curves/tiny-4.png", "learning_curves/tiny-6.png"):
        assert (results / name).read_bytes()[:4] == b"\x89PNG", name
    assert "learning_curves/tiny-6.png" in " ".join(capsys.readouterr().err.split())

    # Without the store that has the runs' epochs, the reports are drawn all the same, and it says so.
    other = f"sqlite:///{tmp_path}/other.db"
    MlflowClient(other).create_experiment(EXPERIMENT)
    assert command("report", "--tracking-uri", other, "--results", str(results)) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "no learning curves" in err and "compare.md" in err


def test_histories_come_back_per_epoch(store):
    tracker = Tracker(store, EXPERIMENT, create=False)
    rows = [r for r in ResultsFolder(Path(results_of(store))).read() if r.status.has_numbers]
    histories = load_histories(tracker, [r.mlflow_run_id for r in rows])
    first = histories[rows[0].mlflow_run_id]
    assert [r.epoch for r in first] == [1, 2]
    assert first[0].train_loss == pytest.approx(2.3) and first[0].val_accuracy == pytest.approx(0.1128, abs=1e-3)


def synthetic_runs() -> pd.DataFrame:
    rows = [{"spec": spec, "backend": backend, "device": "cpu", "seed": seed, "status": "completed", "params": params,
             "test_accuracy": accuracy, "delta_to_baseline": accuracy - 0.92, "train_seconds": 10.0 + seed,
             "train_images_per_sec": 5000.0}
            for spec, params, backend, values in (("a", 100, "torch", (0.98, 0.99, 1.00)), ("b", 200, "torch", (0.995,)),
                                                  ("a", 100, "keras", (0.97, 0.97, 0.97)))
            for seed, accuracy in enumerate(values)]
    return pd.DataFrame(rows)


def test_compare_table_statistics_and_order():
    table = compare.compare_table(synthetic_runs())
    assert table[["setup", "backend"]].values.tolist() == [["b", "torch"], ["a", "torch"], ["a", "keras"]]
    b, a_torch, _ = (row for _, row in table.iterrows())
    assert b["n"] == 1 and math.isnan(b["test_accuracy_ci_low"])
    assert a_torch["n"] == 3 and a_torch["params"] == 100
    assert a_torch["test_accuracy_ci_high"] - a_torch["test_accuracy_mean"] == pytest.approx(0.024841, abs=1e-6)
    assert "| a | torch | cpu | unrecorded | 3 | 100 | 99.00 ± 2.48 |" in " ".join(compare.compare_markdown(table).split())


def test_params_are_blank_when_a_group_mixes_variants():
    table = compare.compare_table(synthetic_runs(), by=["backend"])
    assert math.isnan(table.set_index("backend").loc["torch", "params"])


def test_aggregate_metrics_for_the_invocation_run():
    metrics = compare.aggregate_metrics(synthetic_runs())
    assert metrics["a/torch/cpu/test_accuracy_mean"] == pytest.approx(0.99)
    assert metrics["a/torch/cpu/test_accuracy_n"] == 3
    assert "b/torch/cpu/test_accuracy_ci_low" not in metrics  # one seed: no interval, nothing logged


def test_figures_for_the_runner():
    assert set(figures.invocation_figures(synthetic_runs())) == {
        "accuracy_vs_params.png", "accuracy_vs_time.png", "backend_comparison.png"}
    history = [EpochRecord(1, 0.5, 0.9, 0.4, 0.91, 1.0, 100), EpochRecord(2, 0.3, 0.95, 0.3, 0.96, 1.0, 100)]
    assert set(figures.run_figures(history, [[5, 1], [0, 4]], "r")) == {"learning_curves.png", "confusion_matrix.png"}
    assert set(figures.run_figures(history, None)) == {"learning_curves.png"}


def test_compare_table_leaves_out_rows_without_numbers():
    rows = pd.concat([synthetic_runs(), pd.DataFrame([{"spec": "c", "backend": "torch", "device": "gpu", "seed": 0,
                                                       "status": "skipped", "reason": "no GPU"}])])
    table = compare.compare_table(rows)
    assert "c" not in set(table["setup"]) and len(table) == 3


def test_figures_log_to_an_mlflow_run(store):
    """What the runner does with them: Tracker.log_figure on the child and parent runs."""
    tracker = Tracker(store, "lenet_bench/figures")
    run_id = tracker.start_run("figures")
    history = [EpochRecord(1, 0.5, 0.9, 0.4, 0.91, 1.0, 100)]
    drawn = {**figures.run_figures(history, [[5, 1], [0, 4]], "r"), **figures.invocation_figures(synthetic_runs())}
    for name, figure in drawn.items():
        tracker.log_figure(run_id, figure, name)
    tracker.end_run(run_id, "FINISHED")
    assert {a.path for a in tracker.client.list_artifacts(run_id)} == set(drawn)


def test_timings_of_other_hardware_or_under_load_are_never_averaged_together():
    """A loaded run, or one on other hardware, is its own group: '398.6 ± 1,566.9 s' cannot happen."""
    runs = synthetic_runs()
    runs = runs[(runs["spec"] == "a") & (runs["backend"] == "torch")].copy()
    runs["hardware"] = ["AMD EPYC, 2 cores", "AMD EPYC, 2 cores", "NVIDIA H100"]
    runs["timing"] = ["quiet", "loaded", "quiet"]
    runs["train_seconds"] = [10.0, 400.0, 1.0]
    table = compare.compare_table(runs).set_index("conditions")
    assert sorted(table.index) == ["AMD EPYC, 2 cores", "AMD EPYC, 2 cores, loaded", "NVIDIA H100"]
    assert table["n"].tolist() == [1, 1, 1]
    assert table.loc["AMD EPYC, 2 cores", "train_seconds_mean"] == 10.0


def test_runs_with_overrides_are_their_own_setup():
    runs = synthetic_runs()
    runs["overrides"] = ""
    runs.loc[runs.index[0], "overrides"] = "epochs=1,max_steps=50"
    table = compare.compare_table(runs)
    assert "a@epochs=1,max_steps=50" in set(table["setup"])
    assert table.set_index(["setup", "backend"]).loc[("a", "torch"), "n"] == 2


def test_rows_frame_round_trip():
    from lenet_bench.results.convert import rows_from_frame
    from lenet_bench.results.row import ResultRow, Status

    rows = [ResultRow(run="x/torch/cpu/seed0", spec="x", backend="torch", device="cpu", seed=0,
                      status=Status.COMPLETED, test_accuracy=0.99, params=61706, met_expectation=True),
            ResultRow(run="x/torch/gpu/seed0", spec="x", backend="torch", device="gpu", status=Status.SKIPPED,
                      reason="no CUDA device")]
    assert rows_from_frame(rows_to_frame(rows)) == rows


def test_rows_of_variants_a_spec_no_longer_has_get_a_section_of_their_own():
    from dataclasses import dataclass

    @dataclass(frozen=True)
    class Variant:
        name: str
        base_name: str
        labels: tuple

    frame = pd.DataFrame([{"run": f"{spec}/torch/cpu/seed0", "spec": spec, "base_spec": "m", "overrides": "",
                           "backend": "torch", "device": "cpu", "seed": 0, "status": "completed",
                           "test_accuracy": 0.99, "params": 100} for spec in ("m-new", "m-old")])
    current, superseded = compare.split_superseded(frame, [Variant("m-new", "m", (("model.pool", "new"),))])
    assert list(current["spec"]) == ["m-new"] and list(superseded["spec"]) == ["m-old"]
    text = compare.compare_markdown(compare.compare_table(current), superseded=compare.compare_table(superseded))
    main_table, old_section = text.split("## Variants no longer in the specs")
    assert "m-new" in main_table and "m-old" not in main_table and "m-old" in old_section
    kept, none = compare.split_superseded(frame, None)  # without specs nothing can be called gone
    assert len(kept) == 2 and none.empty
