"""The driver end to end against a temporary MLflow store: logging, results, resume, overrides, statuses,
failures, Ctrl-C. Runs inline with the no-op backend; test_executors.py covers workers and Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from lenet_bench.cli import main
from lenet_bench.engine.driver import Driver
from lenet_bench.engine.plan import RunOptions
from lenet_bench.spec import load_variants

TESTS = Path(__file__).parent
NO_GPU = "no GPU on this machine (no NVIDIA driver found)"
SPEC = """
name: tiny
description: driver test
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
def workspace(tmp_path, mnist_dir, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    return tmp_path


def write_spec(workspace, backend="noop", expect=0.05):
    (workspace / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC.format(backend=backend, expect=expect)))


def cli_run(workspace, mnist_dir, *extra):
    return main(["run", str(workspace / "specs"), "--data-dir", str(mnist_dir),
                 "--tracking-uri", f"sqlite:///{workspace}/mlflow.db", "--results", str(workspace / "results"), *extra])


def runs_of(workspace, *, deleted: bool = False) -> pd.DataFrame:
    mlflow.set_tracking_uri(f"sqlite:///{workspace}/mlflow.db")
    view = mlflow.entities.ViewType.ALL if deleted else mlflow.entities.ViewType.ACTIVE_ONLY
    return mlflow.search_runs(experiment_names=["lenet_bench/specs"], run_view_type=view)


def table(workspace) -> pd.DataFrame:
    return pd.read_csv(workspace / "results" / "runs.csv", keep_default_na=False, na_values=[""]).set_index("run")


def subprocess_script(mnist_dir, body: str, *argv: str) -> str:
    """A script that runs the CLI with the no-op backend registered, in a process of its own."""
    args = ["run", "specs", "--data-dir", str(mnist_dir), "--tracking-uri", "sqlite:///mlflow.db",
            "--results", "results", *argv]
    return textwrap.dedent(f"""
        import signal, sys
        sys.path.insert(0, {str(TESTS)!r})
        import noop_backend
        from lenet_bench import backends
        from lenet_bench.cli import main
        backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
    """) + textwrap.dedent(body) + f"\nsys.exit(main({args!r}))\n"


def started_slow_run(workspace, mnist_dir, body: str = "", *argv: str, seconds: float = 60,
                     until: Path | None = None) -> subprocess.Popen:
    """The CLI in a process of its own, returned once seed 1 is training (slowly, so a signal lands mid-run;
    `until`: a file whose creation ends that training early)."""
    script = subprocess_script(mnist_dir, textwrap.dedent(body) + "noop_backend.SLOW_SEEDS.add(1)\n", *argv)
    job = subprocess.Popen([sys.executable, "-c", script], cwd=workspace, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True,
                           env={**os.environ, "LENET_BENCH_NOOP_SLOW_SECONDS": str(seconds),
                                "LENET_BENCH_NOOP_SLOW_UNTIL_FILE": str(until or "")})
    assert job.stdout is not None
    for line in job.stdout:
        if "noop: training slowly" in line:
            break
    return job


# ------------------------------------------------------------------ logging and results

def test_runs_are_logged_nested_with_params_metrics_and_results(workspace, mnist_dir, noop, capsys, monkeypatch):
    from lenet_bench.engine import hardware

    monkeypatch.setattr(hardware, "nvidia_driver_version", lambda: "")  # a machine without a GPU, as CI's
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    runs = runs_of(workspace)
    kinds = runs["tags.lenet_bench.kind"].value_counts().to_dict()
    assert kinds == {"invocation": 1, "run": 2, "baseline": 1}  # the skipped gpu cells are no runs of their own
    parent_id = runs.loc[runs["tags.lenet_bench.kind"] == "invocation", "run_id"].item()
    children = runs[runs["tags.lenet_bench.kind"] != "invocation"]
    assert (children["tags.mlflow.parentRunId"] == parent_id).all()

    done = runs[runs["tags.lenet_bench.status"] == "completed"].set_index("tags.mlflow.runName")
    assert sorted(done.index) == ["tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"]
    row = done.loc["tiny/noop/cpu/seed0"]
    assert row["params.model.conv.0.filters"] == "4" and row["params.train.optimizer.name"] == "sgd"
    assert row["params.activation"] == "relu" and row["params.backend"] == "noop" and row["params.seed"] == "0"
    assert 0.05 < row["metrics.test_accuracy"] < 0.2  # the majority class of MNIST
    assert row["metrics.test_accuracy_pct"] == pytest.approx(100 * row["metrics.test_accuracy"])
    assert row["metrics.baseline_accuracy"] > 0.8
    assert row["metrics.delta_to_baseline"] == pytest.approx(row["metrics.test_accuracy"] - row["metrics.baseline_accuracy"])
    assert row["metrics.params"] == load_variants([workspace / "specs"])[0].spec.summary().params
    assert row["tags.executor"] == "inline" and row["tags.host"] and row["tags.hardware"]
    client = mlflow.MlflowClient()
    history = client.get_metric_history(row["run_id"], "val_accuracy")
    assert [m.step for m in history] == [1, 2]
    assert {"spec.yaml", "model_summary.txt", "confusion_matrix.json", "architecture.png"} <= \
        {a.path for a in client.list_artifacts(row["run_id"])}
    diagrams = (workspace / "results" / "architectures" / "README.md").read_text()
    assert "- tiny: 4-8-16-" in diagrams and (workspace / "results" / "architectures" / diagrams.split(": ")[-1].strip()).exists()

    inputs = client.get_run(row["run_id"]).inputs.dataset_inputs
    assert {i.dataset.source_type for i in inputs} == {"local"} and str(mnist_dir.resolve()) in inputs[0].dataset.source
    assert {t.value for i in inputs for t in i.tags} == {"train", "validation", "test"}

    # Skipped cells: listed with their reason on the invocation, in results/, not as empty runs.
    # The invocation's run carries the results folder's effects, time to train and where the time went.
    parent_files = {a.path for a in client.list_artifacts(parent_id)}
    assert {"effects.md", "effects_backends.png", "time_to_train.md", "time_to_train.png", "overhead.md"} <= parent_files
    assert (workspace / "results" / "effects.md").read_text().startswith("# What each design choice does")
    skipped = json.loads(client.download_artifacts(parent_id, "skipped_runs.json", str(workspace)) and
                         (workspace / "skipped_runs.json").read_text())
    assert {s["run"] for s in skipped} == {"tiny/noop/gpu/seed0", "tiny/noop/gpu/seed1"}
    assert {s["reason"] for s in skipped} == {NO_GPU}
    results = table(workspace)
    assert sorted(results["status"]) == ["completed", "completed", "skipped", "skipped"]
    assert NO_GPU in (workspace / "results" / "summary.md").read_text()
    # Each finished run says how it went, and the invocation how far it is.
    err = capsys.readouterr().err
    assert "tiny/noop/cpu/seed0: test accuracy" in err and "pp)" in err
    assert "progress: 3/4 done, 1 left" in err and "ETA" in err


def test_rerun_reuses_completed_runs_unless_forced(workspace, mnist_dir, noop, capsys):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    assert len(noop.TRAINED) == 2
    first = table(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    assert len(noop.TRAINED) == 2, "completed runs must not train again"
    assert "0 trained, 2 completed before" in capsys.readouterr().err
    again = table(workspace)
    pd.testing.assert_frame_equal(again.drop(columns="finished_at"), first.drop(columns="finished_at"))
    assert cli_run(workspace, mnist_dir, "--force") == 0
    assert len(noop.TRAINED) == 4


def test_failed_run_does_not_stop_the_matrix_and_exits_1(workspace, mnist_dir, noop):
    write_spec(workspace)
    noop.FAIL_SEEDS.add(0)
    assert cli_run(workspace, mnist_dir) == 1
    by_name = runs_of(workspace).set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed0", "status"] == "FAILED"
    assert by_name.loc["tiny/noop/cpu/seed0", "tags.lenet_bench.status"] == "failed"
    assert by_name.loc["tiny/noop/cpu/seed1", "status"] == "FINISHED"
    assert "planned failure" in table(workspace).loc["tiny/noop/cpu/seed0", "reason"]


def test_the_framework_is_released_after_every_run_failed_or_not(workspace, mnist_dir, noop):
    # Inline, one process runs every job: each must leave nothing behind in its framework.
    write_spec(workspace)
    noop.FAIL_SEEDS.add(0)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 1
    assert noop.TRAINED == [("tiny", 1)]
    assert noop.RELEASED == [0, 1], "release() after the failed seed 0 and after seed 1"


def test_a_diverged_run_is_failed_with_its_reason(workspace, mnist_dir, noop):
    write_spec(workspace)
    noop.NAN_SEEDS.add(1)
    assert cli_run(workspace, mnist_dir) == 1
    row = table(workspace).loc["tiny/noop/cpu/seed1"]
    assert row["status"] == "failed" and row["reason"].startswith("diverged")


def test_missed_expectation_exits_1(workspace, mnist_dir, noop):
    write_spec(workspace, expect=0.5)
    assert cli_run(workspace, mnist_dir) == 1
    results = table(workspace)
    assert results.loc[results["status"] == "completed", "met_expectation"].tolist() == [False, False]


# ------------------------------------------------------------------ identity and statuses

def test_overrides_are_runs_of_their_own_never_judged_never_replacing(workspace, mnist_dir, noop, capsys):
    write_spec(workspace, expect=0.5)  # the no-op backend's ~11% misses it
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 1
    full = table(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--epochs", "1", "--max-steps", "5") == 0, \
        "a quick run is not judged against the full spec's expectation"
    results = table(workspace)
    quick = results.loc["tiny@epochs=1,max_steps=5/noop/cpu/seed0"]
    assert quick["overrides"] == "epochs=1,max_steps=5" and quick["epochs"] == 1
    assert pd.isna(quick["met_expectation"]) and pd.isna(quick["min_test_accuracy"])
    for run in full.index:  # the full runs' rows are untouched
        assert results.loc[run, "epochs"] == 2 and results.loc[run, "met_expectation"] == full.loc[run, "met_expectation"]
    assert "tiny@epochs=1,max_steps=5" in (workspace / "results" / "compare.md").read_text()
    assert main(["check", str(workspace / "results"), "--specs", str(workspace / "specs")]) == 1  # the full runs miss
    assert "not judged" in capsys.readouterr().out


def test_a_failed_or_skipped_run_never_replaces_a_completed_row(workspace, mnist_dir, noop, tmp_path):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    noop.FAIL_SEEDS.add(0)
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--force") == 1
    empty = tmp_path / "no-data"
    empty.mkdir()
    main(["run", str(workspace / "specs"), "--data-dir", str(empty), "--tracking-uri",
          f"sqlite:///{workspace}/mlflow.db", "--results", str(workspace / "results"), "--device", "cpu"])
    results = table(workspace)
    assert results.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert results.loc["tiny/noop/cpu/seed1", "status"] == "completed"
    assert results["test_accuracy"].notna().sum() == 2


def test_an_explicit_request_that_runs_nothing_exits_2(workspace, mnist_dir, noop, capsys):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "gpu") == 2
    assert "nothing ran" in capsys.readouterr().err


def test_selection_that_matches_nothing_is_exit_2(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--only", "nothing-like-this") == 2
    assert cli_run(workspace, mnist_dir, "--backend", "jax") == 2


def test_missing_data_is_exit_2(workspace, noop, tmp_path):
    write_spec(workspace)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_run(workspace, empty) == 2


def test_missing_dataset_is_recorded_as_skipped_and_the_rest_runs(workspace, mnist_dir, noop):
    write_spec(workspace)
    (workspace / "specs" / "cifar.yaml").write_text(textwrap.dedent("""
        name: colour
        data: {dataset: cifar10, input_size: 32}
        model: {in_channels: 3, conv: [{filters: 6}], dense: [10]}
        backends: [noop]
    """))
    assert cli_run(workspace, mnist_dir) == 0
    results = table(workspace)
    assert results.loc["colour/noop/cpu/seed0", "status"] == "skipped"
    assert results.loc["colour/noop/cpu/seed0", "reason"].startswith("data unavailable: ")
    assert "https://www.cs.toronto.edu/~kriz/" in results.loc["colour/noop/cpu/seed0", "reason"]
    assert (results.loc[results["spec"] == "tiny", "status"] == "completed").sum() == 2


def test_skips_are_said_once_up_front_with_the_first_reason_device_then_backend_then_data(
        workspace, mnist_dir, noop, capsys, monkeypatch):
    from lenet_bench.engine import hardware

    monkeypatch.setattr(hardware, "nvidia_driver_version", lambda: "")
    write_spec(workspace)
    (workspace / "specs" / "cifar.yaml").write_text(textwrap.dedent("""
        name: colour
        data: {dataset: cifar10, input_size: 32}
        model: {in_channels: 3, conv: [{filters: 6}], dense: [10]}
        train: {seeds: [0, 1, 2]}
        backends: [noop]
        devices: [cpu, gpu]
    """))
    assert cli_run(workspace, mnist_dir) == 0
    results = table(workspace)
    colour = results[results["spec"] == "colour"]
    assert set(colour.loc[colour["device"] == "gpu", "reason"]) == {NO_GPU}  # the device before the data
    assert colour.loc[colour["device"] == "cpu", "reason"].str.startswith("data unavailable").all()
    err = capsys.readouterr().err
    before_training = err.split("expected:")[0]
    assert before_training.count("skipping 3 run(s) of colour: data unavailable") == 1
    assert before_training.count(f"skipping 5 run(s) of colour, tiny: {NO_GPU}") == 1
    assert err.count("data unavailable") == 1, "said once, not once per run"


def test_the_expected_time_is_said_before_training_from_speeds_measured_before(workspace, mnist_dir, noop, capsys):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    assert "expected: unknown for 2 run(s)" in capsys.readouterr().err  # nothing of noop measured yet
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--force") == 0
    err = capsys.readouterr().err
    assert "expected: about " in err.split("[1/2]")[0]
    assert "[1/2] tiny/noop/cpu/seed0  (ETA " in err


# ------------------------------------------------------------------ resume and interruptions

def test_a_fresh_mlflow_store_resumes_from_the_users_runs_csv(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir) == 0
    first = table(workspace)
    assert first["fingerprint"].notna().sum() == 2
    fresh_store = ("--tracking-uri", f"sqlite:///{workspace}/fresh.db")
    noop.TRAINED.clear()
    assert cli_run(workspace, mnist_dir, *fresh_store) == 0
    assert noop.TRAINED == []
    again = table(workspace)
    for run in ("tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"):
        assert again.loc[run, "status"] == "completed"
        assert again.loc[run, "test_accuracy"] == first.loc[run, "test_accuracy"]
        assert again.loc[run, "fingerprint"] == first.loc[run, "fingerprint"]
    assert cli_run(workspace, mnist_dir, *fresh_store, "--force", "--seed", "0") == 0
    assert noop.TRAINED == [("tiny", 0)]


def test_ctrl_c_keeps_completed_runs_and_marks_the_interrupted_one_killed(workspace, mnist_dir, noop):
    write_spec(workspace)
    noop.INTERRUPT_SEEDS.add(1)
    assert cli_run(workspace, mnist_dir) == 130
    by_name = runs_of(workspace).set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed0", "status"] == "FINISHED"
    assert by_name.loc["tiny/noop/cpu/seed1", "status"] == "KILLED"
    assert by_name.loc[by_name["tags.lenet_bench.kind"] == "invocation", "status"].item() == "KILLED"
    results = table(workspace)
    assert results.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert results.loc["tiny/noop/cpu/seed1", "status"] == "killed"
    noop.INTERRUPT_SEEDS.clear()
    noop.TRAINED.clear()
    assert cli_run(workspace, mnist_dir) == 0
    assert noop.TRAINED == [("tiny", 1)]
    assert main(["check", str(workspace / "results"), "--specs", str(workspace / "specs")]) == 0


def test_a_killed_suite_keeps_its_finished_runs_and_the_next_marks_its_orphans_killed(workspace, mnist_dir, noop):
    """SIGKILL runs no cleanup: runs.csv already holds the finished runs, and MLflow's RUNNING runs of the dead
    invocation are marked KILLED by the next one."""
    write_spec(workspace)
    script = subprocess_script(mnist_dir, "noop_backend.KILL_SEEDS.add(1)\n")
    killed = subprocess.run([sys.executable, "-c", script], cwd=workspace, capture_output=True, text=True)
    assert killed.returncode == 137, killed.stderr[-2000:]
    results = table(workspace)
    assert results.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert "tiny/noop/cpu/seed1" not in results.index
    assert set(runs_of(workspace)["status"]) >= {"RUNNING"}
    assert cli_run(workspace, mnist_dir) == 0
    assert noop.TRAINED == [("tiny", 1)]
    statuses = runs_of(workspace).groupby("tags.lenet_bench.kind")["status"].apply(set).to_dict()
    assert "RUNNING" not in set().union(*statuses.values())
    assert statuses["invocation"] == {"KILLED", "FINISHED"}


def test_sigterm_in_a_background_job_stops_like_ctrl_c(workspace, mnist_dir, noop):
    """kill (SIGTERM), and SIGINT to a job whose shell started it with SIGINT ignored, mark the run KILLED."""
    write_spec(workspace)
    job = started_slow_run(workspace, mnist_dir, """
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a non-interactive shell leaves it
    """)
    job.send_signal(signal.SIGTERM)
    assert job.wait(timeout=60) == 130
    results = table(workspace)
    assert results.loc["tiny/noop/cpu/seed0", "status"] == "completed"
    assert results.loc["tiny/noop/cpu/seed1", "status"] == "killed"
    assert runs_of(workspace).set_index("tags.mlflow.runName").loc["tiny/noop/cpu/seed1", "status"] == "KILLED"


def test_a_run_is_complete_only_once_its_model_and_figures_are_logged(workspace, mnist_dir, noop, monkeypatch):
    from lenet_bench.results.tracking import Tracker

    def broken(self, run_id, figure, artifact_file):
        raise OSError("disk full while logging a figure")

    write_spec(workspace)
    monkeypatch.setattr(Tracker, "log_figure", broken)
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--seed", "0") == 1
    by_name = runs_of(workspace).set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed0", "tags.lenet_bench.status"] == "failed"
    assert by_name.loc["tiny/noop/cpu/seed0", "status"] == "FAILED"
    assert "recording it in MLflow failed" in table(workspace).loc["tiny/noop/cpu/seed0", "reason"]
    monkeypatch.undo()
    assert main(["predict", "tiny/noop/cpu/seed0", str(TESTS / "conftest.py"), "--tracking-uri",
                 f"sqlite:///{workspace}/mlflow.db"]) == 2


# ------------------------------------------------------------------ identity

def test_fingerprint_ignores_sibling_seeds_expectation_and_prose(workspace, noop, monkeypatch):
    """`--seed 0` must find seed 0 of a full run; editing `expect` or a reference must not retrain."""
    import dataclasses

    from lenet_bench.engine.fingerprint import fingerprint
    from lenet_bench.engine.plan import plan_jobs

    write_spec(workspace)
    variants = load_variants([workspace / "specs"])
    full = {job.name: job for job in plan_jobs(variants, RunOptions())}["tiny/noop/cpu/seed0"]
    alone = {job.name: job for job in plan_jobs(variants, RunOptions(seeds=(0,)))}["tiny/noop/cpu/seed0"]
    assert full.spec.train.seeds != alone.spec.train.seeds
    VERSIONS = "noop 1"
    assert fingerprint(full, "data", VERSIONS) == fingerprint(alone, "data", VERSIONS)

    def with_spec(**updates):
        return dataclasses.replace(full, variant=dataclasses.replace(full.variant, spec=full.spec.model_copy(update=updates)))

    expect = full.spec.expect.model_copy(update={"min_test_accuracy": 0.99})
    assert fingerprint(with_spec(expect=expect, description="reworded"), "data", VERSIONS) == fingerprint(full, "data", VERSIONS)
    trained_longer = full.spec.train.model_copy(update={"epochs": 3})
    assert fingerprint(with_spec(train=trained_longer), "data", VERSIONS) != fingerprint(full, "data", VERSIONS)
    # eval_every is part of what a run records (its curves, its time to target).
    evaluated_less = full.spec.train.model_copy(update={"eval_every": 2})
    assert fingerprint(with_spec(train=evaluated_less), "data", VERSIONS) != fingerprint(full, "data", VERSIONS)
    assert fingerprint(full, "other data", VERSIONS) != fingerprint(full, "data", VERSIONS)
    quick = {job.name: job for job in plan_jobs(variants, RunOptions(epochs=1))}["tiny@epochs=1/noop/cpu/seed0"]
    assert fingerprint(quick, "data", VERSIONS) != fingerprint(full, "data", VERSIONS)
    assert fingerprint(full, "data", "noop 2") != fingerprint(full, "data", VERSIONS)  # another framework version
    # A field added later is left out of what is hashed at its default (runs recorded before it keep matching).
    from lenet_bench.engine import fingerprint as fingerprint_module
    from lenet_bench.spec.schema import AugmentSpec

    hashed, dumps = [], fingerprint_module.json.dumps
    monkeypatch.setattr(fingerprint_module.json, "dumps", lambda payload, **kw: hashed.append(payload) or dumps(payload, **kw))
    distorted = full.spec.data.model_copy(update={"augment": AugmentSpec(translate=2)})
    fewer = full.spec.data.model_copy(update={"augment": AugmentSpec(translate=2, probability=0.9)})
    assert fingerprint(with_spec(data=fewer), "data", VERSIONS) != fingerprint(with_spec(data=distorted), "data", VERSIONS)
    assert hashed[0]["spec"]["data"]["augment"]["probability"] == 0.9
    assert "probability" not in hashed[1]["spec"]["data"]["augment"] and hashed[1]["spec"]["data"]["augment"]["translate"] == 2


def test_code_version_ignores_comments_docstrings_and_layout():
    """Rewording prose in the training code keeps recorded runs valid; changing the program does not."""
    from lenet_bench.engine.fingerprint import code_without_prose

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


@pytest.mark.slow
def test_torch_end_to_end_two_steps(workspace, mnist_dir):
    write_spec(workspace, backend="torch", expect=0.0)
    options = RunOptions(data_dir=str(mnist_dir), tracking_uri=f"sqlite:///{workspace}/mlflow.db",
                         results_dir=workspace / "results", max_steps=2, devices=("cpu",), live=False)
    rows = Driver(options).run(load_variants([workspace / "specs"]), "lenet_bench/specs")
    assert [r.status.value for r in rows] == ["completed", "completed"]
    row = rows[0]
    assert row.train_images_per_sec > 0 and row.latency_p50_ms > 0 and row.framework_version.startswith("2.")
    assert row.peak_rss_mb >= row.rss_at_start_mb > 0 and row.cores >= 1 and row.cpu_model
    client = mlflow.MlflowClient(f"sqlite:///{workspace}/mlflow.db")
    assert {"model", "learning_curves.png", "confusion_matrix.png", "architecture.png"} <= \
        {a.path for a in client.list_artifacts(row.mlflow_run_id)}


def test_an_override_the_spec_cannot_take_is_exit_2_naming_the_flag(workspace, mnist_dir, noop, capsys):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--subset", "100000") == 2
    assert cli_run(workspace, mnist_dir, "--epochs", "5000") == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "command line (--subset 100000)" in err and "data.subset" in err and "60,000" in err
    assert "command line (--epochs 5000)" in err and "expected at most 1000" in err
    assert noop.TRAINED == [] and not (workspace / "results").exists()


def test_runs_csv_and_summary_are_readable_by_others_as_every_other_results_file(workspace, mnist_dir, noop):
    import os

    write_spec(workspace)
    previous = os.umask(0o022)
    try:
        assert cli_run(workspace, mnist_dir, "--device", "cpu", "--seed", "0") == 0
    finally:
        os.umask(previous)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (workspace / "results").iterdir() if p.is_file()}
    assert modes["runs.csv"] == modes["summary.md"] == modes["compare.md"] == 0o644, modes


def test_a_second_signal_while_stopping_does_not_break_the_cleanup(workspace, mnist_dir, noop):
    """Stops are a flag checked between steps: a second Ctrl-C 0.3 s after the first, or a SIGTERM on top,
    only says "stopping..."; the runs in flight and the invocation still end KILLED, exit 130, no traceback."""
    write_spec(workspace)
    job = started_slow_run(workspace, mnist_dir)
    job.send_signal(signal.SIGINT)
    for pause, again in ((0.02, signal.SIGINT), (0.0, signal.SIGTERM), (0.3, signal.SIGINT)):
        time.sleep(pause)  # during the cleanup, or as the process exits: neither may break it
        if job.poll() is None:
            job.send_signal(again)
    rest = job.stdout.read()
    assert job.wait(timeout=60) == 130, rest
    assert "stopping..." in rest
    assert "Traceback" not in rest and "Exception ignored" not in rest, rest
    by_name = runs_of(workspace).set_index("tags.mlflow.runName")
    assert by_name.loc["tiny/noop/cpu/seed1", "status"] == "KILLED"
    assert by_name.loc[by_name["tags.lenet_bench.kind"] == "invocation", "status"].item() == "KILLED"
    assert table(workspace).loc["tiny/noop/cpu/seed1", "status"] == "killed"


def test_every_second_outside_training_is_accounted_per_phase(workspace, mnist_dir, noop, capsys):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    text = (workspace / "results" / "overhead.md").read_text()
    for phase in ("training steps", "baseline", "data", "MLflow logging", "decide (data keys, fingerprints, reuse)",
                  "reports (tables, figures)", "framework release", "hand-off to and from the worker"):
        assert f"| {phase} " in text, phase
    assert "time outside training: " in capsys.readouterr().err
    top = text.split("## The 2 run(s) with the most time outside training")[1]
    assert "tiny/noop/cpu/seed0" in top and "tiny/noop/cpu/seed1" in top


def test_the_runs_with_most_time_outside_training_are_named_with_their_largest_phases():
    from lenet_bench.engine import phases

    quiet = phases.split_backend_call({"data": 1.0, "backend.train": 12.0}, train_seconds=10.0, eval_seconds=1.0)
    stalled = {**quiet, phases.HAND_OFF: 20.0}
    top = phases.runs_outside_training({"a": quiet, "b": stalled, "c": quiet}, top=2)
    assert list(top["run"]) == ["b", "a"]
    assert top.iloc[0]["outside training s"] == pytest.approx(23.0)
    assert top.iloc[0]["largest"].startswith(f"{phases.HAND_OFF} 20.0 s, data 1.0 s")
    text = phases.overhead_markdown(phases.overhead_table([quiet, stalled], {}, 30.0, 2), 30.0, 2, 2, top)
    assert "## The 2 run(s) with the most time outside training" in text and "| b " in text


def test_the_overhead_table_adds_up_to_the_run_seconds_available():
    from lenet_bench.engine import phases

    runs = [phases.split_backend_call({"data": 1.0, "backend.train": 12.0}, train_seconds=10.0, eval_seconds=1.0)] * 2
    driver = {"reports": 2.0, phases.MLFLOW_LOGGING: 1.0}
    table = phases.overhead_table(runs, driver, wall_seconds=17.0, capacity=2).set_index("phase")
    assert table.loc["training steps", "seconds"] == 20.0 and table.index[0] == "training steps"
    assert table.loc["reports", "seconds"] == 4.0  # the driver holds both slots while it writes
    assert table.loc[phases.MLFLOW_LOGGING, "seconds"] == 1.0  # one slot: the other run trains meanwhile
    assert table["seconds"].sum() == pytest.approx(34.0) and table["share"].sum() == pytest.approx(1.0)
    assert table.loc["unaccounted (start-up, waiting, idle slots)", "seconds"] == pytest.approx(3.0)


def test_the_baseline_is_logged_once_per_data_not_once_per_invocation(workspace, mnist_dir, noop):
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--seed", "0") == 0
    assert cli_run(workspace, mnist_dir, "--device", "cpu", "--seed", "0", "--force") == 0
    kinds = runs_of(workspace)["tags.lenet_bench.kind"].value_counts().to_dict()
    assert kinds == {"invocation": 2, "run": 2, "baseline": 1}


@pytest.mark.slow
def test_a_run_another_live_invocation_trains_is_skipped_and_said_not_trained_twice(workspace, mnist_dir, noop,
                                                                                  capsys):
    write_spec(workspace)
    released = workspace / "second-invocation-done"
    first = started_slow_run(workspace, mnist_dir, "", "--device", "cpu", seconds=60, until=released)  # seed 1 trains there
    try:
        assert main(["run", "specs", "--data-dir", str(mnist_dir), "--tracking-uri", "sqlite:///mlflow.db",
                     "--results", "results", "--device", "cpu"]) == 0
        assert ("tiny", 1) not in noop.TRAINED, "the run the other invocation trains is not trained again"
        err = " ".join(capsys.readouterr().err.split())
        assert "skipping 1 run(s) of tiny: being trained by another invocation (pid" in err
    finally:
        released.touch()  # the first invocation's seed 1 ends now, not after its full minute
        assert first.wait(timeout=120) == 0
    results = table(workspace)
    assert results.loc["tiny/noop/cpu/seed1", "status"] == "completed"  # the owner's row, not the skip
    assert [p for p in (workspace / "results" / ".claims").iterdir() if p.stat().st_size] == []  # none held


def test_a_claim_whose_owner_is_gone_is_taken_over(tmp_path):
    """A claim is a lock the operating system drops with its process: an owner killed with -9 (no clean-up
    of its own) frees the run at once, with no process check of ours."""
    from lenet_bench.engine.claims import Claims

    owner = subprocess.Popen([sys.executable, "-c", "import sys, time; from lenet_bench.engine.claims import Claims; "
                              f"mine = Claims({str(tmp_path)!r}); assert mine.claim('abc') is None; print('held', flush=True); "
                              "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        refused = Claims(tmp_path).claim("abc")
        assert refused.startswith(f"being trained by another invocation (pid {owner.pid} on ")
    finally:
        owner.kill()
        owner.wait()
    claims = Claims(tmp_path)
    assert claims.claim("abc") is None and claims.held == {"abc"}
    assert Claims(tmp_path).claim("abc").startswith("being trained by another invocation")
    claims.release_all()
    assert claims.held == set() and (tmp_path / ".claims" / "abc").read_text() == ""  # nobody's now
    assert Claims(tmp_path).claim("abc") is None


def test_an_invocation_asks_each_backend_once_and_the_next_invocation_asks_again(workspace, mnist_dir, noop,
                                                                                  monkeypatch):
    """Installed, usable on a device, framework versions: one answer per backend (and device) per invocation,
    however many runs it plans; a second invocation in the same process asks again (a backend installed
    meanwhile is seen)."""
    from lenet_bench import backends
    from lenet_bench.device import Device

    asked: list[tuple[str, ...]] = []
    for name in ("installed_reason", "framework_versions"):
        original = getattr(backends, name)
        monkeypatch.setattr(backends, name, lambda backend, _f=original, _n=name: asked.append((_n, backend)) or _f(backend))
    original_unavailable = backends.unavailable_reason
    monkeypatch.setattr(backends, "unavailable_reason",
                        lambda backend, device: asked.append(("unavailable_reason", backend, Device(device).value))
                        or original_unavailable(backend, device))
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0  # two seeds of one backend
    assert sorted(asked) == sorted(set(asked)) and ("installed_reason", "noop") in asked
    assert ("framework_versions", "noop") in asked and ("unavailable_reason", "noop", "cpu") in asked
    first = len(asked)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    assert sorted(asked[first:]) == sorted(asked[:first])
