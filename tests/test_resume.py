"""Resume inside a run: every complete epoch is checkpointed, and a stopped run goes on from its last
complete epoch to the same final weights as a run never stopped, on every backend; through the command
line, a Ctrl-C'd run resumes on the next invocation, which says so, and its checkpoint goes when it
completes; no checkpoint is ever written in the reference results."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import resume_bodies as bodies
from backend_cases import body_result, case_runner  # noqa: F401 (fixtures)
from conftest import require_backend
from test_driver import subprocess_script

from lenet_bench import backends
from lenet_bench.cli import main
from lenet_bench.results.table import REFERENCE_MARKER
from lenet_bench.training.checkpoint import CHECKPOINTS, BackendState, Checkpoint, CheckpointError, LoopState
from lenet_bench.training.result import EpochRecord

BODIES = {"test_a_stopped_run_resumes_to_the_weights_of_one_never_stopped": bodies.stopped_and_resumed}
# Same process, same operations in the same order: the resumed run computes bit for bit what the straight one
# did on PyTorch and Keras on TensorFlow; on JAX a step compiled in a fresh process may fuse differently.
WEIGHT_TOLERANCE = {"torch": 0.0, "keras": 1e-6, "keras-jax": 1e-6}


@pytest.mark.parametrize("backend", backends.names())
def test_a_stopped_run_resumes_to_the_weights_of_one_never_stopped(backend, body_result):
    found = body_result(backend)
    straight, resumed = found["straight"], found["resumed"]
    assert found["stopped"] and found["saved_epoch"] == bodies.STOP_AFTER
    assert found["files"] == ["LATEST", f"epoch-{bodies.STOP_AFTER:04d}"]  # the last complete epoch only
    assert found["saved_epoch_after"] == bodies.RESUMED.train.epochs
    assert straight["resumed_from_epoch"] == 0 and resumed["resumed_from_epoch"] == bodies.STOP_AFTER
    assert [r.epoch for r in resumed["history"]] == [1, 2, 3]
    for mine, theirs in zip(resumed["history"], straight["history"], strict=True):
        assert mine.train_loss == pytest.approx(theirs.train_loss, abs=1e-6)
        assert mine.val_accuracy == pytest.approx(theirs.val_accuracy, abs=1e-9)
    elapsed = [r.elapsed for r in resumed["history"]]
    assert elapsed == sorted(elapsed) and elapsed[-1] == pytest.approx(sum(r.seconds for r in resumed["history"]))
    for mine, theirs in zip(resumed["weights"], straight["weights"], strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=WEIGHT_TOLERANCE[backend])
    assert resumed["test_accuracy"] == straight["test_accuracy"]


# ------------------------------------------------------------------ the checkpoint folder


class _Arrays:
    """A backend state of one file, that can be made to fail while it is written."""

    def __init__(self):
        self.value, self.fail = 0, False

    def state(self) -> BackendState:
        def save(folder):
            if self.fail:
                raise KeyboardInterrupt  # stopped in the middle of writing
            (folder / "state.json").write_text(json.dumps(self.value))

        def restore(folder):
            self.value = json.loads((folder / "state.json").read_text())

        return BackendState(save, restore)


def _loop(epoch: int) -> LoopState:
    return LoopState(epoch, 4, [EpochRecord(e, 1.0, 0.5, None, None, 1.0, 10, float(e)) for e in range(1, epoch + 1)],
                     0.5, 5)


def test_a_stop_while_an_epoch_is_written_leaves_the_last_complete_one(tmp_path):
    backend, checkpoint = _Arrays(), Checkpoint(tmp_path / CHECKPOINTS / "abc")
    backend.value = 1
    checkpoint.save(_loop(1), backend.state())
    backend.value, backend.fail = 2, True
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(_loop(2), backend.state())
    assert checkpoint.saved_epoch() == 1
    restored = _Arrays()
    state = checkpoint.load(restored.state(), steps_per_epoch=4)
    assert state.epoch == 1 and [r.epoch for r in state.history] == [1] and restored.value == 1
    backend.fail = False
    checkpoint.save(_loop(2), backend.state())  # the next save clears what the stopped one left
    assert sorted(p.name for p in checkpoint.folder.iterdir()) == ["LATEST", "epoch-0002"]


def test_a_checkpoint_of_another_shape_is_removed_and_says_so(tmp_path):
    backend, checkpoint = _Arrays(), Checkpoint(tmp_path / CHECKPOINTS / "abc")
    backend.value = 7
    checkpoint.save(_loop(1), backend.state())
    restored = _Arrays()
    assert checkpoint.load(restored.state(), steps_per_epoch=5) is None and restored.value == 0  # nothing restored
    assert checkpoint.notes == [f"its checkpoint of epoch 1 in {checkpoint.folder} is unreadable (ValueError: it "
                                "holds epoch 1 of 4 steps; expected epoch 1 of 5)", "trained from scratch"]
    assert not checkpoint.folder.exists()


def test_a_backend_state_that_fails_to_restore_is_removed_and_raised(tmp_path):
    """The model may hold part of it: the caller trains again from a new model (test_checkpoint_faults.py)."""
    backend, checkpoint = _Arrays(), Checkpoint(tmp_path / CHECKPOINTS / "abc")
    checkpoint.save(_loop(1), backend.state())
    (checkpoint.folder / "epoch-0001" / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="could not be restored"):
        checkpoint.load(backend.state(), steps_per_epoch=4)
    assert not (checkpoint.folder / "epoch-0001").exists()
    assert checkpoint.load(backend.state(), steps_per_epoch=4) is None


def test_no_checkpoint_inside_the_reference_results(tmp_path):
    (tmp_path / "reference").mkdir()
    (tmp_path / "reference" / REFERENCE_MARKER).write_text("")
    with pytest.raises(ValueError, match="reference"):
        Checkpoint(tmp_path / "reference" / CHECKPOINTS / "abc")


# ------------------------------------------------------------------ through the command line

SPEC = """
name: tiny
description: resume test
data: {subset: 2000, test_subset: 500, validation_split: 0.1}
model:
  conv: [{filters: 4}, {filters: 8}]
  dense: [16]
train: {optimizer: {name: sgd, momentum: 0.9}, batch_size: 32, epochs: 3, max_steps_per_epoch: 20, seeds: [0]}
backends: [torch]
devices: [cpu]
expect: {min_test_accuracy: 0.0}
"""
RUN = "tiny/torch/cpu/seed0"


@pytest.fixture
def torch_workspace(tmp_path, mnist_dir, monkeypatch):
    require_backend("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def table(workspace, results="results") -> pd.DataFrame:
    return pd.read_csv(workspace / results / "runs.csv", keep_default_na=False, na_values=[""]).set_index("run")


def _run(workspace, mnist_dir, results="results", store="mlflow.db", *extra):
    return main(["run", str(workspace / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                 f"sqlite:///{workspace / store}", "--results", str(workspace / results), *extra])


def interrupt_slowed_torch_run(workspace, mnist_dir, at: str) -> str:
    """`run` of the workspace's specs in a fresh process, its PyTorch steps slowed down (not changed) so that a
    Ctrl-C sent when a line holds `at` lands where it should whatever the machine's speed; the output."""
    script = subprocess_script(mnist_dir, """
        import importlib, time
        torch_train = importlib.import_module("lenet_bench.backends.torch.train")
        steps = torch_train.train_steps
        torch_train.train_steps = lambda *args: (time.sleep(0.3), steps(*args))[1]
    """)
    job = subprocess.Popen([sys.executable, "-c", script], cwd=workspace, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    seen = []
    for line in job.stdout:
        seen.append(line)
        if at in line:
            job.send_signal(signal.SIGINT)
            break
    seen.append(job.stdout.read())
    assert job.wait(timeout=120) == 130, "".join(seen)
    return "".join(seen)


@pytest.mark.slow
def test_a_run_stopped_by_ctrl_c_resumes_on_the_next_invocation(torch_workspace, mnist_dir, capsys):
    workspace = torch_workspace
    interrupt_slowed_torch_run(workspace, mnist_dir, "epoch 1/3")  # the Ctrl-C lands in epoch 2
    assert table(workspace).loc[RUN, "status"] == "killed"
    folders = list((workspace / "results" / CHECKPOINTS).iterdir())
    assert len(folders) == 1 and Checkpoint(folders[0]).saved_epoch() == 1

    capsys.readouterr()
    assert _run(workspace, mnist_dir) == 0
    out = capsys.readouterr().err
    assert f"resuming 1 from a checkpoint ({RUN} from epoch 1 of 3), training 0 from scratch" in out, out
    assert "epoch 1/3" not in out and "epoch 2/3" in out and "epoch 3/3" in out
    assert not (workspace / "results" / CHECKPOINTS).exists()  # gone once the run completed
    resumed = table(workspace).loc[RUN]
    assert resumed["status"] == "completed" and "resumed after epoch 1" in resumed["reason"]

    assert _run(workspace, mnist_dir, "straight", "straight.db") == 0  # never stopped
    assert "resuming 0 from a checkpoint, training 1 from scratch" in capsys.readouterr().err
    straight = table(workspace, "straight").loc[RUN]
    assert resumed["test_accuracy"] == straight["test_accuracy"]
    assert resumed["test_loss"] == pytest.approx(straight["test_loss"], abs=1e-7)


@pytest.mark.slow
def test_no_checkpoint_is_written_in_the_reference_results(torch_workspace, mnist_dir, monkeypatch):
    saved = []
    original = Checkpoint.save
    monkeypatch.setattr(Checkpoint, "save", lambda self, *args: (saved.append(self.folder), original(self, *args)))
    reference = torch_workspace / "reference"
    reference.mkdir()
    (reference / REFERENCE_MARKER).write_text("")
    assert _run(torch_workspace, mnist_dir, "reference", "mlflow.db", "--update-reference", "--epochs", "2",
                "--max-steps", "2") == 0
    assert saved == [] and not (reference / CHECKPOINTS).exists()
    assert _run(torch_workspace, mnist_dir, "results", "other.db", "--epochs", "2", "--max-steps", "2") == 0
    assert len(saved) == 2 and all(folder.parent == torch_workspace / "results" / CHECKPOINTS for folder in saved)
