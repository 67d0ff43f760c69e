"""Stores and results folders that fail: each gives a clear error, early, and nothing finished is lost.

Concurrent writers of runs.csv and of a new SQLite store, an unwritable or misplaced results folder (its
claims and checkpoints folders too), a broken runs.csv or one without a column a command needs, a second
invocation of the same runs, an MLflow server that does not answer, and the reference results. A full disk:
test_full_disk.py.
"""

from __future__ import annotations

import multiprocessing
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from small_disk import cli, run_on_small_disk
from test_driver import started_slow_run

from lenet_bench.cli import main
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import REFERENCE_MARKER, ResultsError, ResultsFolder

TESTS = Path(__file__).parent
SPEC = """
name: tiny
data: {subset: 2000, test_subset: 500, validation_split: 0.1}
model: {conv: [{filters: 4}, {filters: 8}], dense: [16]}
train: {optimizer: {name: sgd}, epochs: 1, seeds: [0, 1]}
backends: [noop]
devices: [cpu]
expect: {min_test_accuracy: 0.05}
"""


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def run(workspace, mnist_dir, *extra, results: Path | None = None, uri: str | None = None) -> int:
    return main(["run", str(workspace / "specs"), "--data-dir", str(mnist_dir),
                 "--tracking-uri", uri or f"sqlite:///{workspace}/mlflow.db",
                 "--results", str(results or workspace / "results"), *extra])


# ------------------------------------------------------------------ runs.csv

def _write_rows(folder: str, writer: int, count: int) -> None:
    results = ResultsFolder(Path(folder))
    for i in range(count):
        results.merge([ResultRow(run=f"w{writer}/noop/cpu/seed{i}", spec=f"w{writer}", backend="noop", device="cpu",
                                 seed=i, status=Status.COMPLETED, test_accuracy=0.5)])


@pytest.mark.slow
def test_two_processes_writing_runs_csv_at_once_lose_no_row(tmp_path):
    processes = [multiprocessing.get_context("spawn").Process(target=_write_rows, args=(str(tmp_path), w, 40))
                 for w in range(2)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
        assert process.exitcode == 0
    rows = ResultsFolder(tmp_path).read()
    assert len(rows) == 80 and len({r.run for r in rows}) == 80
    assert not list(tmp_path.glob("*.tmp")), "no temporary file left behind"


@pytest.mark.slow
def test_two_invocations_started_at_once_on_a_new_sqlite_store_both_record(workspace, mnist_dir):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from lenet_bench import backends
        from lenet_bench.cli import main
        backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
        sys.exit(main(["run", "specs", "--data-dir", {str(mnist_dir)!r}, "--tracking-uri", "sqlite:///shared.db",
                       "--results", sys.argv[1], "--seed", sys.argv[2]]))
    """)
    jobs = [subprocess.Popen([sys.executable, "-c", script, f"results{seed}", str(seed)], cwd=workspace,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in (0, 1)]
    outputs = [job.communicate(timeout=300)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0], "\n".join(o[-2000:] for o in outputs)
    mlflow.set_tracking_uri(f"sqlite:///{workspace}/shared.db")
    runs = mlflow.search_runs(experiment_names=["lenet_bench/specs"])
    assert sorted(runs.loc[runs["tags.lenet_bench.kind"] == "run", "tags.mlflow.runName"]) == \
        ["tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"]


def test_a_file_where_the_results_folder_should_be_is_exit_2_before_training(workspace, mnist_dir, noop, capsys):
    (workspace / "results").write_text("not a folder")
    assert run(workspace, mnist_dir) == 2
    assert noop.TRAINED == [] and "is a file, not a folder" in capsys.readouterr().err


def test_a_results_folder_that_cannot_be_written_is_exit_2_before_training(workspace, mnist_dir, noop, capsys):
    assert run(workspace, mnist_dir, results=Path("/proc/lenet_bench_results")) == 2
    assert noop.TRAINED == [] and "cannot write results to /proc/lenet_bench_results" in capsys.readouterr().err


@pytest.mark.parametrize("content, message", [
    ("", "is empty"),
    ("run,status\n<<<<<<< HEAD\na,completed\n=======\na,failed\n>>>>>>> other\n", "unresolved merge conflict (line 2)"),
    ("just some text\n", "no 'run' and 'status' columns"),
    ("run,spec,backend,device,seed,status\nx/noop/cpu/seed0,x,noop,cpu,0,finished-ish\n",
     "'finished-ish' is not a valid Status"),
    ("run,spec,backend,device,status\nx/noop/cpu/seed0,x,noop,cpu,completed\n", "lacks the column(s) 'seed'"),
    ("run,status\nx/noop/cpu/seed0,completed\n", "lacks the column(s) 'spec', 'backend', 'device', 'seed'"),
])
def test_a_broken_runs_csv_is_exit_2_saying_how_to_fix_it(workspace, mnist_dir, noop, capsys, content, message):
    (workspace / "results").mkdir()
    (workspace / "results" / "runs.csv").write_text(content)
    assert run(workspace, mnist_dir) == 2
    err = capsys.readouterr().err
    assert noop.TRAINED == [] and message in err and "runs.csv" in err
    assert (workspace / "results" / "runs.csv").read_text() == content, "the file is left as it was"


# ------------------------------------------------------------------ MLflow

def test_an_mlflow_server_that_does_not_answer_fails_within_seconds_naming_it(workspace, mnist_dir, noop, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once the socket is closed
    start = time.monotonic()
    assert run(workspace, mnist_dir, uri=f"http://127.0.0.1:{port}") == 2
    assert time.monotonic() - start < 30
    err = capsys.readouterr().err
    assert f"http://127.0.0.1:{port}" in err and "does not answer" in err and noop.TRAINED == []


# ------------------------------------------------------------------ the reference results

def test_the_reference_results_are_written_only_on_purpose(workspace, mnist_dir, noop, capsys):
    reference = workspace / "reference"
    reference.mkdir()
    (reference / REFERENCE_MARKER).write_text("ours")
    assert run(workspace, mnist_dir, results=reference) == 2
    assert "--update-reference" in capsys.readouterr().err and not (reference / "runs.csv").exists()
    assert noop.TRAINED == []
    assert run(workspace, mnist_dir, "--update-reference", results=reference) == 0
    assert len(pd.read_csv(reference / "runs.csv")) == 2
    with pytest.raises(ResultsError):
        ResultsFolder(reference).merge([])


def test_the_committed_reference_folder_is_marked():
    assert ResultsFolder(Path(__file__).resolve().parents[1] / "results" / "reference").is_reference
    assert os.path.isfile(Path(__file__).resolve().parents[1] / "results" / "reference" / REFERENCE_MARKER)


def test_a_results_folder_inside_the_reference_results_is_refused_too(workspace, mnist_dir, noop, capsys):
    reference = workspace / "reference"
    reference.mkdir()
    (reference / REFERENCE_MARKER).write_text("ours")
    assert run(workspace, mnist_dir, results=reference / "mine") == 2
    assert "--update-reference" in capsys.readouterr().err and not (reference / "mine").exists()
    assert noop.TRAINED == []


@pytest.mark.parametrize("address", ["not an address", "ftp://127.0.0.1:8786", "tcp://127.0.0.1", "tcp://:8786"])
def test_a_cluster_address_that_cannot_be_one_is_exit_2_at_once(workspace, mnist_dir, noop, capsys, address):
    start = time.monotonic()
    assert run(workspace, mnist_dir, "--cluster", address) == 2
    assert time.monotonic() - start < 5
    assert "expected a Dask scheduler address like tcp://HOST:PORT" in capsys.readouterr().err


def test_a_run_name_with_quotes_is_looked_up_not_parsed(tmp_path):
    from lenet_bench.results.tracking import STATUS_TAG, Tracker

    tracker = Tracker(f"sqlite:///{tmp_path}/mlflow.db", "e")
    for name in ("lenet5'", 'a"b\\\\c', "lenet5x"):
        run_id = tracker.start_run(name, tags={STATUS_TAG: Status.COMPLETED.value})
        tracker.end_run(run_id, "FINISHED")
    assert tracker.find_run("lenet5'").info.run_name == "lenet5'"
    assert tracker.find_run('a"b\\\\c').info.run_name == 'a"b\\\\c'
    with pytest.raises(LookupError):
        tracker.find_run('lenet5"')


def test_predict_of_a_run_name_with_a_quote_is_exit_2_naming_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from PIL import Image, ImageDraw

    image = tmp_path / "digit.png"
    picture = Image.new("L", (64, 64), 255)
    ImageDraw.Draw(picture).line([(32, 10), (32, 54)], fill=0, width=6)  # a 1
    picture.save(image)
    from lenet_bench.results.tracking import Tracker

    Tracker(f"sqlite:///{tmp_path}/mlflow.db", "e")  # a store, without that run
    assert main(["predict", "lenet5'", str(image), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
    err = capsys.readouterr().err
    assert "lenet5'" in err and "Traceback" not in err


# ------------------------------------------------------------------ claims and checkpoints folders

@pytest.mark.parametrize("name", [".claims", ".checkpoints"])
def test_a_file_where_the_claims_or_checkpoints_folder_should_be_is_exit_2_before_training(workspace, mnist_dir,
                                                                                          noop, capsys, name):
    (workspace / "results").mkdir()
    (workspace / "results" / name).write_text("not a folder")
    assert run(workspace, mnist_dir) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert noop.TRAINED == [] and f"{workspace / 'results' / name} is not a folder" in err and "Traceback" not in err
    assert (workspace / "results" / name).read_text() == "not a folder"


@pytest.mark.parametrize("name", [".claims", ".checkpoints"])
def test_a_read_only_claims_or_checkpoints_folder_is_exit_2_before_training(workspace, mnist_dir, name):
    """Read-only as a mount is, which stops root too (a chmod does not)."""
    found, output = run_on_small_disk(workspace, cli(workspace, mnist_dir, f"{str(workspace / 'results')!r}",
                                                     f"{str(workspace / 'mlflow.db')!r}", """
        invoke("read-only")
        found["trained"] = len(noop_backend.TRAINED)
    """), size_kib=1024, at=f"results/{name}", read_only=True)
    assert found["read-only"]["code"] == 2 and found["trained"] == 0, found
    assert f"cannot write into {workspace / 'results' / name} (Read-only file system)" in found["read-only"]["err"]
    assert "Traceback" not in output


# ------------------------------------------------------------------ a table without a column a command needs

def _table_without(workspace, mnist_dir, column: str) -> Path:
    assert run(workspace, mnist_dir) == 0
    path = workspace / "results" / "runs.csv"
    pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=[column]).to_csv(path, index=False)
    return path


@pytest.mark.parametrize("command", ["effects", "check", "report", "run"])
@pytest.mark.parametrize("column", ["seed", "test_accuracy", "backend"])
def test_a_table_without_a_column_a_command_needs_is_exit_2_naming_it(workspace, mnist_dir, noop, capsys, command,
                                                                      column):
    path = _table_without(workspace, mnist_dir, column)
    before = path.read_text()
    capsys.readouterr()
    args = {"effects": ["effects", str(path.parent), "--specs", str(workspace / "specs")],
            "check": ["check", str(path.parent), "--specs", str(workspace / "specs")],
            "report": ["report", "--results", str(path.parent), "--tracking-uri", f"sqlite:///{workspace}/mlflow.db",
                       "--specs", str(workspace / "specs")]}
    code = run(workspace, mnist_dir, "--force") if command == "run" else main(args[command])
    err = " ".join(capsys.readouterr().err.split())
    if command == "run" and column == "test_accuracy":
        # run reads the table to reuse and merge into it, the accuracies coming from the runs: it is rewritten whole.
        assert code == 0, err
        assert "test_accuracy" in pd.read_csv(path).columns
        return
    assert code == 2 and f"{path} lacks the column(s) '{column}'" in err and "Traceback" not in err, err
    assert path.read_text() == before, "the table is left as it was"


# ------------------------------------------------------------------ a second invocation

@pytest.mark.slow
def test_a_second_invocation_whose_runs_another_live_one_trains_exits_0_saying_so(workspace, mnist_dir, noop,
                                                                                 capsys):
    released = workspace / "second-invocation-done"
    first = started_slow_run(workspace, mnist_dir, "", "--seed", "1", seconds=60, until=released)
    try:
        assert main(["run", "specs", "--data-dir", str(mnist_dir), "--tracking-uri", "sqlite:///mlflow.db",
                     "--results", "results", "--seed", "1"]) == 0
        err = " ".join(capsys.readouterr().err.split())
        assert "skipping 1 run(s) of tiny: being trained by another invocation (pid" in err
        assert "0 trained, 0 completed before, 1 skipped, 0 failed" in err and "nothing ran" not in err
        assert noop.TRAINED == []
    finally:
        released.touch()
        assert first.wait(timeout=120) == 0
    assert pd.read_csv(workspace / "results" / "runs.csv").set_index("run").loc["tiny/noop/cpu/seed1", "status"] == \
        "completed"
