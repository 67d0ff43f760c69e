"""A full disk, for real (a small tmpfs, small_disk.py), wherever lenet_bench writes: the results folder,
its claims and checkpoints, the MLflow store. Found before training where it is full already; where it
fills up mid-run, exit 2 naming the folder and its free space, no traceback, no claim left behind, and what
was recorded before still readable (and the next invocation, once there is room, finishes the rest)."""

from __future__ import annotations

import textwrap

import pandas as pd
import pytest
from small_disk import cli, run_on_small_disk
from test_faults import SPEC

MIB = 1024


@pytest.fixture
def workspace(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def rows(folder) -> dict[str, str]:
    table = pd.read_csv(folder / "runs.csv", keep_default_na=False)
    return dict(zip(table["run"], table["status"], strict=True))


def leftovers(folder) -> list[str]:
    """Claims, partial checkpoints and temporary files a stopped invocation must not leave (a claim's lock file
    stays, empty and unlocked, as filelock requires: only one that names an owner is a claim)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")
                  if p.name.endswith(".tmp") or ".partial-" in p.name or ".space-check-" in p.name
                  or (p.parent.name == ".claims" and p.stat().st_size > 0))


@pytest.mark.slow
def test_a_results_folder_on_a_full_disk_is_exit_2_before_training(workspace, mnist_dir):
    found, output = run_on_small_disk(workspace, cli(workspace, mnist_dir, "SMALL / 'results'",
                                                     f"{str(workspace)!r} + '/mlflow.db'", """
        invoke("first", "--seed", "0")
        noop_backend.fill_disk(SMALL / "filler")
        trained = len(noop_backend.TRAINED)
        invoke("full", "--seed", "1")
        found["trained_when_full"] = len(noop_backend.TRAINED) - trained
        copy_out()
    """), size_kib=8 * MIB)
    assert found["first"]["code"] == 0, found
    full = found["full"]
    assert full["code"] == 2 and found["trained_when_full"] == 0, found
    assert f"no space left on device in {workspace / 'small' / 'results'} (" in full["err"], full
    assert " free)" in full["err"] and "--results DIR" in full["err"] and "Traceback" not in output
    results = workspace / "after" / "results"
    assert rows(results) == {"tiny/noop/cpu/seed0": "completed"}  # what was recorded before, readable
    assert leftovers(results) == []


@pytest.mark.slow
def test_a_disk_that_fills_up_mid_run_stops_with_exit_2_and_the_next_invocation_finishes(workspace, mnist_dir):
    """The results folder's disk fills while seed 1 trains (another program takes it): its row cannot be
    written. MLflow (elsewhere) has it, but runs.csv is the record: once there is room again the next invocation
    reuses seed 0 and trains seed 1 again."""
    found, output = run_on_small_disk(workspace, cli(workspace, mnist_dir, "SMALL / 'results'",
                                                     f"{str(workspace)!r} + '/mlflow.db'", """
        os.environ["LENET_BENCH_NOOP_FILL_PATH"] = str(SMALL / "filler")
        noop_backend.FILL_SEEDS.add(1)
        invoke("filled")
        found["after_fill"] = sorted(os.listdir(SMALL / "results"))
        found["claimed after fill"] = [p.name for p in (SMALL / "results" / ".claims").glob("*") if p.stat().st_size]
        shutil.copy(SMALL / "results" / "runs.csv", AFTER.parent / "runs_when_full.csv")
        (SMALL / "filler").unlink()
        noop_backend.FILL_SEEDS.clear()
        invoke("again")
        copy_out()
    """), size_kib=8 * MIB)
    filled = found["filled"]
    assert filled["code"] == 2, found
    assert f"no space left on device in {workspace / 'small' / 'results'} (" in filled["err"], filled
    assert "Traceback" not in output
    when_full = pd.read_csv(workspace / "runs_when_full.csv", keep_default_na=False)
    assert dict(zip(when_full["run"], when_full["status"], strict=True)) == {"tiny/noop/cpu/seed0": "completed"}
    assert found["claimed after fill"] == []  # the lock files stay, empty: nobody's claim
    assert found["again"]["code"] == 0, found["again"]
    again = " ".join(found["again"]["err"].split())
    assert "1 completed before" in again and "1 trained" in again, again  # seed 1 is not in the record: trained
    results = workspace / "after" / "results"
    assert rows(results) == {"tiny/noop/cpu/seed0": "completed", "tiny/noop/cpu/seed1": "completed"}
    assert leftovers(results) == []


@pytest.mark.slow
def test_an_mlflow_store_whose_disk_fills_mid_run_is_exit_2_naming_it(workspace, mnist_dir):
    """The store (SQLite and artifacts) on the small disk: the run that found it full is not recorded as
    complete anywhere; the next invocation marks it KILLED and trains it again."""
    found, output = run_on_small_disk(workspace, cli(workspace, mnist_dir, f"{str(workspace)!r} + '/results'",
                                                     "SMALL / 'mlflow.db'", """
        os.chdir(SMALL)  # MLflow's artifacts (./mlruns) on the small disk too
        os.environ["LENET_BENCH_NOOP_FILL_PATH"] = str(SMALL / "filler")
        noop_backend.FILL_SEEDS.add(1)
        invoke("filled")
        (SMALL / "filler").unlink()
        noop_backend.FILL_SEEDS.clear()
        invoke("again")
        import mlflow
        mlflow.set_tracking_uri("sqlite:///" + str(SMALL / "mlflow.db"))
        runs = mlflow.search_runs(experiment_names=["lenet_bench/specs"], filter_string="tags.mlflow.runName = "
                                  "'tiny/noop/cpu/seed1'")
        found["seed1 statuses"] = sorted(runs["tags.lenet_bench.status"].fillna("none"))
        noop_backend.fill_disk(SMALL / "filler")
        invoke("full before", "--force")
    """), size_kib=16 * MIB)
    filled = found["filled"]
    assert filled["code"] == 2, found
    assert f"no space left on device: {workspace / 'small'} (" in filled["err"], filled
    assert "Traceback" not in output
    assert found["again"]["code"] == 0, found["again"]
    assert "1 trained, 1 completed before" in found["again"]["err"]
    assert found["seed1 statuses"] == ["completed", "none"]  # the run that found the disk full is not complete
    assert rows(workspace / "results") == {"tiny/noop/cpu/seed0": "completed", "tiny/noop/cpu/seed1": "completed"}
    assert leftovers(workspace / "results") == []
    full = found["full before"]
    assert full["code"] == 2 and f"no space left on device in {workspace / 'small'} (" in full["err"], full
    assert "--tracking-uri" in full["err"]


def test_claims_checkpoints_and_the_check_before_training_on_a_full_disk(workspace):
    """Each writer on a full disk, directly: a claim that cannot be written whole is not left behind; a
    checkpoint that cannot be written is a note, not a failed run; the check writes real bytes (an empty file
    still fits on a full disk)."""
    found, _ = run_on_small_disk(workspace, """
        import noop_backend
        from lenet_bench.disk_space import OutOfSpace
        from lenet_bench.engine.claims import Claims
        from lenet_bench.results.table import ResultsFolder
        from lenet_bench.training.checkpoint import BackendState, Checkpoint, LoopState

        results = SMALL / "results"
        results.mkdir()
        noop_backend.fill_disk(SMALL / "filler")
        (results / "empty").touch()
        found["an empty file fits"] = (results / "empty").exists()
        (results / "empty").unlink()
        try:
            ResultsFolder(results).check_writable()
        except OutOfSpace as err:
            found["check"] = str(err)
        claims = Claims(results)
        try:
            claims.claim("abc")
        except OutOfSpace as err:
            found["claim"] = str(err)
        found["held"] = sorted(claims.held)
        found["claims left"] = sorted(p.name for p in (results / ".claims").iterdir() if p.stat().st_size) \\
            if (results / ".claims").is_dir() else []
        claims.release_all()
        checkpoint = Checkpoint(results / ".checkpoints" / "abc")
        state = BackendState(lambda folder: (folder / "state.bin").write_bytes(b"x" * 100_000), lambda folder: None)
        checkpoint.save(LoopState(1, 4, [], 0.0, 0), state)
        checkpoint.save(LoopState(2, 4, [], 0.0, 0), state)
        found["notes"] = checkpoint.notes
        found["out of space"] = checkpoint.out_of_space
        found["saved epoch"] = checkpoint.saved_epoch()
        found["checkpoint files"] = sorted(str(p.relative_to(results)) for p in (results / ".checkpoints").rglob("*"))
    """, size_kib=1 * MIB)
    small = workspace / "small"
    assert found["an empty file fits"]
    assert found["check"].startswith(f"no space left on device in {small / 'results'} (") and "--results DIR" in \
        found["check"]
    assert found["claim"].startswith(f"no space left on device in {small / 'results' / '.claims'} (")
    assert found["held"] == [] and found["claims left"] == []
    assert len(found["notes"]) == 1 and found["out of space"] and found["saved epoch"] is None
    assert found["notes"][0].startswith("epoch 1 and later were not checkpointed (no space left on device, ")
    assert all(".partial-" not in name for name in found["checkpoint files"]), found["checkpoint files"]
