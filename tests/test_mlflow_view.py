"""What the MLflow view reads, read back through MLflow's client (test_browser.py looks at it in Chromium):
accuracies logged as a person reads them, the experiment marked as model training, the view's columns (the
design axes first), its grouping over seeds with every group folded, a name column wide enough for the
override runs' names, and runs recorded before the grouping given their group."""

from __future__ import annotations

import json

import pytest
from mlflow.tracking import MlflowClient
from test_driver import cli_run, workspace, write_spec  # noqa: F401 (fixture)

from lenet_bench.engine.run_row import fraction, points
from lenet_bench.results import view

EXPERIMENT = "lenet_bench/specs"


def _client(workspace) -> MlflowClient:
    return MlflowClient(f"sqlite:///{workspace}/mlflow.db")


def _runs(client: MlflowClient, experiment_id: str):
    return client.search_runs([experiment_id], "tags.`lenet_bench.kind` = 'run'")


def test_accuracies_are_rounded_where_they_are_computed():
    assert points(fraction(0.9890999794006348)) == 98.91  # a float32 count of 9,891 in 10,000
    assert points(fraction(0.9890999794006348) - 0.925) == 6.41
    assert points(1 - fraction(0.9890999794006348)) == 1.09
    assert fraction(2 / 3) == 0.666667 and points(2 / 3) == 66.6667  # no count to recover: float32's digits kept


def test_the_view_state_puts_the_axes_first_groups_over_seeds_and_folds_the_groups():
    state = json.loads(view.shared_view_state(300, ["tiny/noop/cpu", "tiny@epochs=1/noop/cpu"]))
    order = state["columnOrder"]
    assert order[:2] == [view.RUN_NAME, view.CREATED]
    assert order[2:9] == ["params.`activation`", "params.`pooling`", "params.`padding`", "params.`architecture`",
                          "params.`backend`", "params.`device`", "tags.`seed`"]
    assert order[9] == "metrics.`test_accuracy_pct`" and set(order[2:]) == set(state["selectedColumns"])
    assert state["columnWidths"][view.RUN_NAME] == 300
    assert state["groupBy"] == {"aggregateFunction": "average",
                                "groupByKeys": [{"mode": "tag", "groupByData": view.SEED_GROUP_TAG}]}
    assert state["groupsExpanded"] == {"tag.seeds_of.tiny/noop/cpu": False, "tag.seeds_of.tiny@epochs=1/noop/cpu": False}
    too_many = json.loads(view.shared_view_state(300, [f"variant-{i:05d}/torch/cpu" for i in range(2000)]))
    assert "groupsExpanded" not in too_many  # past MLflow's 20,000 characters a tag holds: unfolded, still stored


def test_the_name_column_fits_the_longest_name_within_bounds():
    assert view.name_width(["a/noop/cpu/seed0"]) == view.MIN_NAME_PX
    long = "lenet5@epochs=1,max_steps=50/torch/cpu/seed0"
    assert view.name_width([long, "lenet5/torch/cpu/seed0"]) == int(len(long) * view.PX_PER_CHARACTER
                                                                     + view.NAME_PADDING_PX)
    assert view.name_width(["x" * 500]) == view.MAX_NAME_PX
    group = "lenet5@epochs=1,max_steps=50/torch/cpu"  # its label, 'Group: ...', is longer than its runs' names
    assert view.name_width([long], [group]) == int(len(f"Group: {group}") * view.PX_PER_CHARACTER
                                                   + view.GROUP_PADDING_PX) > view.name_width([long])
    assert view.stored_name_width(view.shared_view_state(333)) == 333
    assert view.stored_name_width(None) == view.stored_name_width("not json") == view.MIN_NAME_PX


def test_a_run_logs_what_the_view_reads_and_older_runs_get_their_group(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    client = _client(workspace)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert experiment.tags[view.EXPERIMENT_KIND_TAG] == view.MODEL_TRAINING
    runs = _runs(client, experiment.experiment_id)
    assert sorted(r.data.tags[view.SEED_GROUP_TAG] for r in runs) == ["tiny/noop/cpu"] * 2
    for run in runs:
        metrics = run.data.metrics
        assert metrics["test_accuracy_pct"] == round(100 * metrics["test_accuracy"], 4)
        assert repr(metrics["test_accuracy_pct"]) == f"{metrics['test_accuracy_pct']:.4f}".rstrip("0").rstrip(".")
        assert metrics["gap_to_baseline_pp"] == round(metrics["gap_to_baseline_pp"], 4)
        assert {"activation", "pooling", "padding", "architecture", "backend", "device", "seed"} <= run.data.params.keys()
    narrow = json.loads(experiment.tags[view.VIEW_TAG])["columnWidths"][view.RUN_NAME]

    # A run recorded before the grouping: its group tag gone; the next invocation (with overrides) gives it back.
    client.delete_tag(runs[0].info.run_id, view.SEED_GROUP_TAG)
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--epochs", "1", "--max-steps", "5") == 0
    experiment = client.get_experiment_by_name(EXPERIMENT)
    groups = sorted(r.data.tags.get(view.SEED_GROUP_TAG) for r in _runs(client, experiment.experiment_id))
    assert groups == ["tiny/noop/cpu"] * 2 + ["tiny@epochs=1,max_steps=5/noop/cpu"] * 2
    state = json.loads(experiment.tags[view.VIEW_TAG])
    assert set(state["groupsExpanded"]) == {view.group_id("tiny/noop/cpu"),
                                            view.group_id("tiny@epochs=1,max_steps=5/noop/cpu")}
    wide = state["columnWidths"][view.RUN_NAME]
    assert wide == view.name_width(["tiny@epochs=1,max_steps=5/noop/cpu/seed0"],
                                   ["tiny@epochs=1,max_steps=5/noop/cpu", "tiny/noop/cpu"]) > narrow

    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0  # shorter names: the column keeps its width
    experiment = client.get_experiment_by_name(EXPERIMENT)
    assert json.loads(experiment.tags[view.VIEW_TAG])["columnWidths"][view.RUN_NAME] == wide


@pytest.mark.parametrize("ui", ["http://127.0.0.1:5000", "http://127.0.0.1:5000/"])
def test_the_url_opens_the_view_in_model_training_mode(ui):
    assert view.view_url(ui, "7") == ("http://127.0.0.1:5000/#/experiments/7/runs?viewStateShareKey=lenet_bench"
                                      "&workflowType=machine_learning")
