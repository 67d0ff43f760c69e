"""`export`: the committed reference table into a fresh MLflow store, read back through MLflow's client: every
completed row a finished run with the row's own numbers and the view's group, nothing else exported, nothing
exported twice, and a view whose order keeps each group whole when the UI cannot load every run at once."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from mlflow.tracking import MlflowClient

from lenet_bench.cli import main
from lenet_bench.results import view
from lenet_bench.results.export import EXPORTED_FROM_TAG
from lenet_bench.results.row import AXIS_COLUMNS
from lenet_bench.spec import load_variants

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference" / "runs.csv"


def _table(folder: Path, completed: int, others: int) -> pd.DataFrame:
    """A results folder holding the first `completed` completed and `others` other rows of the reference table."""
    frame = pd.read_csv(REFERENCE, dtype=str, keep_default_na=False)
    chosen = pd.concat([frame[frame["status"] == "completed"].head(completed),
                        frame[frame["status"] != "completed"].head(others)])
    folder.mkdir()
    chosen.to_csv(folder / "runs.csv", index=False)
    return chosen


def _export(folder: Path, store: str) -> int:
    return main(["export", str(folder), "--tracking-uri", store, "--experiment", "exported"])


def test_export_logs_each_completed_row_once_with_its_numbers(tmp_path, capsys):
    chosen = _table(tmp_path / "results", completed=12, others=3)
    store = f"sqlite:///{tmp_path}/mlflow.db"
    assert _export(tmp_path / "results", store) == 0
    assert "12 run(s)" in capsys.readouterr().err
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("exported")
    runs = client.search_runs([experiment.experiment_id], "tags.`lenet_bench.kind` = 'run'")
    completed = chosen[chosen["status"] == "completed"]
    assert sorted(r.info.run_name for r in runs) == sorted(completed["run"])
    assert all(r.info.status == "FINISHED" for r in runs)
    for run in runs:
        source = completed.set_index("run").loc[run.info.run_name]
        assert run.data.metrics["test_accuracy"] == float(source["test_accuracy"])
        assert run.data.metrics["params"] == float(source["params"])
        assert run.data.tags["lenet_bench.fingerprint"] == source["fingerprint"]
        setup = f"{source['spec']}@{source['overrides']}" if source["overrides"] else source["spec"]
        assert run.data.tags[view.SEED_GROUP_TAG] == f"{setup}/{source['backend']}/{source['device']}"
        assert run.data.tags[EXPORTED_FROM_TAG].endswith("runs.csv")
        # The tags a trained run starts with (view.identity_tags, the recorder's too): its design axes among them.
        assert {axis: run.data.tags[axis] for axis in AXIS_COLUMNS} == {axis: source[axis] for axis in AXIS_COLUMNS}
        assert (run.data.tags["variant"], run.data.tags["seed"]) == (source["spec"], source["seed"])
    state = json.loads(experiment.tags[view.VIEW_TAG])
    assert state["orderByKey"] == "metrics.`test_accuracy_pct`"  # 12 runs fit the UI's first page: best first

    assert _export(tmp_path / "results", store) == 0  # again: nothing new, nothing twice
    assert "0 run(s)" in capsys.readouterr().err
    assert len(client.search_runs([experiment.experiment_id], "tags.`lenet_bench.kind` = 'run'")) == 12


def test_a_view_of_more_runs_than_the_first_page_is_ordered_by_group():
    small = json.loads(view.shared_view_state(300, ["a/torch/cpu"], runs=view.UI_PAGE_RUNS))
    large = json.loads(view.shared_view_state(300, ["a/torch/cpu"], runs=view.UI_PAGE_RUNS + 1))
    assert (small["orderByKey"], small["orderByAsc"]) == ("metrics.`test_accuracy_pct`", False)
    assert (large["orderByKey"], large["orderByAsc"]) == (f"tags.`{view.SEED_GROUP_TAG}`", True)


def test_export_of_a_folder_without_a_table_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert _export(tmp_path / "empty", f"sqlite:///{tmp_path}/mlflow.db") == 2
    assert "runs.csv not found" in capsys.readouterr().err


def test_the_rows_axis_columns_are_the_specs_design_axes():
    """identity_tags reads the axes from a row's columns: they must be the keys Spec.axes() gives a row."""
    variant = load_variants([Path(__file__).resolve().parents[1] / "specs" / "lenet5.yaml"])[0]
    assert tuple(variant.spec.axes()) == AXIS_COLUMNS
