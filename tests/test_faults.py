"""Stores and results folders that fail: each gives a clear error, early, and nothing finished is lost.

Concurrent writers of runs.csv and of a new SQLite store, an unwritable or misplaced results folder, a
broken runs.csv, a full disk, an MLflow server that does not answer, and the reference results.
"""

from __future__ import annotations

import errno
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
    ("run,status\nx/noop/cpu/seed0,finished-ish\n", "'finished-ish' is not a valid Status"),
])
def test_a_broken_runs_csv_is_exit_2_saying_how_to_fix_it(workspace, mnist_dir, noop, capsys, content, message):
    (workspace / "results").mkdir()
    (workspace / "results" / "runs.csv").write_text(content)
    assert run(workspace, mnist_dir) == 2
    err = capsys.readouterr().err
    assert noop.TRAINED == [] and message in err and "runs.csv" in err
    assert (workspace / "results" / "runs.csv").read_text() == content, "the file is left as it was"


def test_a_full_disk_keeps_what_mlflow_has_and_says_what_was_not_written(workspace, mnist_dir, noop, monkeypatch,
                                                                          capsys):
    def full(self, rows):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ResultsFolder, "merge", full)
    assert run(workspace, mnist_dir) == 1
    err = " ".join(capsys.readouterr().err.split())
    assert "No space left on device" in err and "is in MLflow run" in err and "report" in err
    mlflow.set_tracking_uri(f"sqlite:///{workspace}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["lenet_bench/specs"])
    assert (runs["tags.lenet_bench.status"] == "completed").sum() == 2
    monkeypatch.undo()
    assert main(["report", "--tracking-uri", f"sqlite:///{workspace}/mlflow.db", "--results",
                 str(workspace / "results")]) == 0
    assert len(pd.read_csv(workspace / "results" / "runs.csv")) == 2


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
