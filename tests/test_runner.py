"""The runner end to end against a temporary MLflow store: logging, results, resume, failures, Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import mlflow
import pandas as pd
import pytest

import noop_backend
from lenet_bench import backends
from lenet_bench.cli import main
from lenet_bench.plan import RunOptions
from lenet_bench.runner import Runner
from lenet_bench.spec import load_variants

SPEC = """
name: tiny
description: runner test
data: {{subset: 2000, test_subset: 500, validation_split: 0.1}}
model:
  conv: [{{filters: 4}}, {{filters: 8}}]
  dense: [16]
train: {{optimizer: {{name: sgd}}, epochs: 2, seeds: [0, 1]}}
backends: [{backend}]
devices: [cpu, gpu]
expect: {{min_test_accuracy: {expect}}}
"""


@pytest.fixture
def noop():
    backends.register("noop", "noop_backend")
    noop_backend.TRAINED.clear()
    noop_backend.FAIL_SEEDS.clear()
    noop_backend.INTERRUPT_SEEDS.clear()
    yield noop_backend
    backends.unregister("noop")


@pytest.fixture
def workspace(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    return tmp_path


def write_spec(workspace, backend="noop", expect=0.05):
    (workspace / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC.format(backend=backend, expect=expect)))


def cli_run(workspace, mnist_dir, *extra):
    return main(["run", str(workspace / "specs"), "--data-dir", str(mnist_dir),
                 "--tracking-uri", f"sqlite:///{workspace}/mlflow.db", "--results", str(workspace / "results"), *extra])


def runs_of(workspace) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{workspace}/mlflow.db")
    return mlflow.search_runs(experiment_names=["lenet_bench/specs"])


def test_runs_are_logged_nested_with_params_metrics_and_results(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    runs = runs_of(workspace)
    kinds = runs["tags.lenet_bench.kind"].value_counts().to_dict()
    assert kinds == {"invocation": 1, "run": 4, "baseline": 1}  # 2 seeds x (cpu, gpu) + its baseline
    parent_id = runs.loc[runs["tags.lenet_bench.kind"] == "invocation", "run_id"].item()
    children = runs[runs["tags.lenet_bench.kind"] != "invocation"]
    assert (children["tags.mlflow.parentRunId"] == parent_id).all()

    done = runs[runs["tags.lenet_bench.status"] == "completed"].set_index("tags.mlflow.runName")
    assert sorted(done.index) == ["tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"]
    row = done.loc["tiny/noop/cpu/seed0"]
    assert row["params.model.conv.0.filters"] == "4" and row["params.train.optimizer.name"] == "sgd"
    assert row["params.activation"] == "relu" and row["params.backend"] == "noop" and row["params.seed"] == "0"
    assert 0.05 < row["metrics.test_accuracy"] < 0.2  # the majority class of MNIST
    assert row["metrics.baseline_accuracy"] > 0.8
    assert row["metrics.delta_to_baseline"] == pytest.approx(row["metrics.test_accuracy"] - row["metrics.baseline_accuracy"])
    assert row["metrics.params"] == load_variants([workspace / "specs"])[0].spec.summary().params
    client = mlflow.MlflowClient()
    history = client.get_metric_history(row["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert {"spec.yaml", "model_summary.txt", "confusion_matrix.json"} <= {a.path for a in client.list_artifacts(row["run_id"])}

    inputs = client.get_run(row["run_id"]).inputs.dataset_inputs
    assert {i.dataset.source_type for i in inputs} == {"local"} and str(mnist_dir.resolve()) in inputs[0].dataset.source
    assert {t.value for i in inputs for t in i.tags} == {"train", "validation", "test"}
    assert sorted(i.dataset.name for i in inputs) == ["mnist/test", "mnist/train", "mnist/validation"]

    skipped = runs[runs["tags.lenet_bench.status"] == "skipped"]
    assert set(skipped["tags.skip_reason"]) == {"noop runs on the CPU only"}

    table = pd.read_csv(workspace / "results" / "runs.csv")
    assert sorted(table["status"]) == ["completed", "completed", "skipped", "skipped"]
    assert "noop runs on the CPU only" in (workspace / "results" / "summary.md").read_text()


def test_rerun_skips_completed_runs_unless_forced(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    assert len(noop.TRAINED) == 2
    first = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert cli_run(workspace, mnist_dir) == 0
    assert len(noop.TRAINED) == 2, "completed runs must not train again"
    table = pd.read_csv(workspace / "results" / "runs.csv")
    assert sorted(table["status"]) == ["cached", "cached", "skipped", "skipped"]
    assert table["test_accuracy"].notna().sum() == 2, "cached rows keep their numbers"
    # A row read back from MLflow is the row written when the run finished: no curve or system metrics added.
    assert set(table.columns) == {"run", *first.columns}
    cached = table.set_index("run").loc[first.index[first["status"] == "completed"]]
    assert (cached["framework_version"] == first["framework_version"].dropna()).all()
    assert (cached["test_accuracy"] == first["test_accuracy"].dropna()).all()
    # A changed spec (here: epochs) is a different run.
    assert cli_run(workspace, mnist_dir, "--epochs", "1") == 0
    assert len(noop.TRAINED) == 4
    assert cli_run(workspace, mnist_dir, "--force") == 0
    assert len(noop.TRAINED) == 6


def test_failed_run_does_not_stop_the_matrix_and_exits_1(workspace, mnist_dir, noop):
    write_spec(workspace)
    noop.FAIL_SEEDS.add(0)
    assert cli_run(workspace, mnist_dir) == 1
    runs = runs_of(workspace)
    by_name = runs.set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed0", "status"] == "FAILED"
    assert by_name.loc["tiny/noop/cpu/seed1", "status"] == "FINISHED"
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert "planned failure" in table.loc["tiny/noop/cpu/seed0", "reason"]


def test_missed_expectation_exits_1(workspace, mnist_dir, noop):
    write_spec(workspace, expect=0.5)
    assert cli_run(workspace, mnist_dir) == 1
    table = pd.read_csv(workspace / "results" / "runs.csv")
    assert table.loc[table["status"] == "completed", "met_expectation"].tolist() == [False, False]


def test_ctrl_c_keeps_completed_runs_and_marks_the_interrupted_one_killed(workspace, mnist_dir, noop):
    write_spec(workspace)
    noop.INTERRUPT_SEEDS.add(1)
    assert cli_run(workspace, mnist_dir) == 130
    by_name = runs_of(workspace).set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed0", "status"] == "FINISHED"
    assert by_name.loc["tiny/noop/cpu/seed1", "status"] == "KILLED"
    assert (by_name["tags.lenet_bench.kind"] == "invocation").sum() == 1
    assert by_name.loc[by_name["tags.lenet_bench.kind"] == "invocation", "status"].item() == "KILLED"
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert table.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert table.loc["tiny/noop/cpu/seed1", "status"] == "killed"
    # Resuming trains only what is missing.
    noop.INTERRUPT_SEEDS.clear()
    noop.TRAINED.clear()
    assert cli_run(workspace, mnist_dir) == 0
    assert noop.TRAINED == [("tiny", 1)]


def test_a_killed_suite_keeps_the_runs_it_finished_in_results(workspace, mnist_dir, noop):
    """SIGKILL (a session's end, the OOM killer) runs no cleanup: runs.csv must already hold the finished runs."""
    write_spec(workspace)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import noop_backend
        from lenet_bench import backends
        from lenet_bench.cli import main
        backends.register("noop", "noop_backend")
        noop_backend.KILL_SEEDS.add(1)
        main(["run", "specs", "--data-dir", {str(mnist_dir)!r}, "--tracking-uri", "sqlite:///mlflow.db",
              "--results", "results"])
    """)
    killed = subprocess.run([sys.executable, "-c", script], cwd=workspace, capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr[-2000:]
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert table.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert "tiny/noop/cpu/seed1" not in table.index
    # The next invocation trains only the run that died.
    assert cli_run(workspace, mnist_dir) == 0
    assert noop.TRAINED == [("tiny", 1)]


def test_sigterm_in_a_background_job_stops_like_ctrl_c(workspace, mnist_dir, noop):
    """kill (SIGTERM), and SIGINT to a job whose shell started it with SIGINT ignored, mark the run KILLED."""
    write_spec(workspace)
    script = textwrap.dedent(f"""
        import signal, sys
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a non-interactive shell leaves it
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        import noop_backend
        from lenet_bench import backends
        from lenet_bench.cli import main
        backends.register("noop", "noop_backend")
        noop_backend.SLOW_SEEDS.add(1)
        sys.exit(main(["run", "specs", "--data-dir", {str(mnist_dir)!r}, "--tracking-uri", "sqlite:///mlflow.db",
                       "--results", "results"]))
    """)
    job = subprocess.Popen([sys.executable, "-c", script], cwd=workspace, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    for line in job.stdout:
        if "noop: training slowly" in line:
            break
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 130
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert table.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert table.loc["tiny/noop/cpu/seed1", "status"] == "killed"
    assert runs_of(workspace).set_index("tags.mlflow.runName").loc["tiny/noop/cpu/seed1", "status"] == "KILLED"


def test_a_fresh_mlflow_store_resumes_from_results_runs_csv(workspace, mnist_dir, noop):
    """mlflow.db is not committed: a new checkout with results/ must not retrain what runs.csv records."""
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    first = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert first.loc["tiny/noop/cpu/seed0", "fingerprint"] and first["fingerprint"].notna().sum() == 2
    fresh_store = ("--tracking-uri", f"sqlite:///{workspace}/fresh.db")  # as a new checkout has no mlflow.db
    noop.TRAINED.clear()
    assert cli_run(workspace, mnist_dir, *fresh_store) == 0
    assert noop.TRAINED == []
    again = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    for run in ("tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"):
        assert again.loc[run, "status"] == "cached"
        assert again.loc[run, "test_accuracy"] == first.loc[run, "test_accuracy"]
        assert again.loc[run, "fingerprint"] == first.loc[run, "fingerprint"]
    # --force retrains.
    assert cli_run(workspace, mnist_dir, *fresh_store, "--force", "--seed", "0") == 0
    assert noop.TRAINED == [("tiny", 0)]


def test_fingerprint_ignores_sibling_seeds_expectation_and_prose(workspace, noop):
    """`--seed 0` must find seed 0 of a full run; editing `expect` or a reference must not retrain."""
    import dataclasses

    from lenet_bench.plan import plan_jobs
    from lenet_bench.runner import fingerprint

    write_spec(workspace)
    variants = load_variants([workspace / "specs"])
    full = {job.name: job for job in plan_jobs(variants, RunOptions())}["tiny/noop/cpu/seed0"]
    alone = {job.name: job for job in plan_jobs(variants, RunOptions(seeds=(0,)))}["tiny/noop/cpu/seed0"]
    assert full.spec.train.seeds != alone.spec.train.seeds
    assert fingerprint(full, "data") == fingerprint(alone, "data")

    def with_spec(**updates):
        return dataclasses.replace(full, variant=dataclasses.replace(full.variant, spec=full.spec.model_copy(update=updates)))

    expect = full.spec.expect.model_copy(update={"min_test_accuracy": 0.99})
    assert fingerprint(with_spec(expect=expect, description="reworded"), "data") == fingerprint(full, "data")
    trained_longer = full.spec.train.model_copy(update={"epochs": 3})
    assert fingerprint(with_spec(train=trained_longer), "data") != fingerprint(full, "data")
    assert fingerprint(full, "other data") != fingerprint(full, "data")


def test_code_version_ignores_comments_docstrings_and_layout():
    """Rewording prose in the training code keeps recorded runs valid; changing the program does not."""
    from lenet_bench.runner import code_without_prose

    original = textwrap.dedent("""
        \"\"\"Module docstring.\"\"\"
        def step(x, lr):
            \"\"\"Step docstring.\"\"\"
            return x - lr * x  # a comment
    """)
    reworded = textwrap.dedent("""
        \"\"\"Another docstring, longer.\"\"\"


        def step(x,
                 lr):
            # a new comment
            return x - lr * x
    """)
    changed = original.replace("x - lr * x", "x + lr * x")
    assert code_without_prose(original) == code_without_prose(reworded)
    assert code_without_prose(original) != code_without_prose(changed)
    # A docstring alone as a body is still a program.
    assert code_without_prose('def f():\n    """Only prose."""\n') == code_without_prose("def f():\n    pass\n")


def test_selection_that_matches_nothing_is_exit_2(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--only", "nothing-like-this") == 2
    assert cli_run(workspace, mnist_dir, "--backend", "jax") == 2


def test_missing_data_is_exit_2(workspace, noop, tmp_path):
    write_spec(workspace)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_run(workspace, empty) == 2


@pytest.mark.slow
def test_torch_end_to_end_one_step(workspace, mnist_dir):
    write_spec(workspace, backend="torch", expect=0.0)
    options = RunOptions(data_dir=str(mnist_dir), tracking_uri=f"sqlite:///{workspace}/mlflow.db",
                         results_dir=workspace / "results", max_steps=2, devices=("cpu",), live=False)
    outcomes = Runner(options).run(load_variants([workspace / "specs"]), "lenet_bench/specs")
    assert [o.status for o in outcomes] == ["completed", "completed"]
    row = outcomes[0].row
    assert row["train_images_per_sec"] > 0 and row["latency_p50_ms"] > 0 and row["framework_version"]


def test_missing_dataset_is_recorded_as_skipped_and_the_rest_runs(workspace, mnist_dir, noop):
    write_spec(workspace)
    (workspace / "specs" / "cifar.yaml").write_text(textwrap.dedent("""
        name: colour
        data: {dataset: cifar10, input_size: 32}
        model: {in_channels: 3, conv: [{filters: 6}], dense: [10]}
        backends: [noop]
    """))
    assert cli_run(workspace, mnist_dir) == 0
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert table.loc["colour/noop/cpu/seed0", "status"] == "skipped"
    assert table.loc["colour/noop/cpu/seed0", "reason"].startswith("data unavailable: ")
    assert "cifar10" in table.loc["colour/noop/cpu/seed0", "reason"]
    assert (table.loc[table["spec"] == "tiny", "status"] == "completed").sum() == 2
