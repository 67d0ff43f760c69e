"""A damaged checkpoint never fails its run (issue 38): a real PyTorch run stopped after epoch 2, its
checkpoint then damaged every way a disk or a person can (a state file cut in half, missing, a folder in its
place; loop.json missing or garbage; LATEST garbage or naming an epoch that is gone; the epoch folder or the
run's checkpoint folder a file). The next invocation says once what was wrong, resumes from the last readable
epoch or trains from scratch on a new model, and exits 0; a run trained from scratch ends with the test
accuracy of a run never stopped (no half-restored weights)."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from conftest import require_backend
from test_resume import RUN, SPEC, interrupt_slowed_torch_run

from lenet_bench.cli import main
from lenet_bench.training.checkpoint import CHECKPOINTS, LATEST, LOOP_STATE

STATE = "torch.pt"


def invoke(folder: Path, mnist_dir: Path, results: str = "results") -> int:
    return main(["run", str(folder / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                 f"sqlite:///{folder / results}.db", "--results", str(folder / results)])


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, mnist_dir) -> tuple[Path, float]:
    """A results folder whose run was stopped (SIGINT) after its epoch 2, and the test accuracy of the same
    run never stopped."""
    require_backend("torch")
    folder = tmp_path_factory.mktemp("stopped")
    (folder / "specs").mkdir()
    (folder / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    seen = interrupt_slowed_torch_run(folder, mnist_dir, "epoch 2/3")  # the stop lands in epoch 3
    (checkpoint,) = (folder / "results" / CHECKPOINTS).iterdir()
    assert (checkpoint / LATEST).read_text() == '{"epoch": 2}', seen
    assert invoke(folder, mnist_dir, "straight") == 0
    straight = pd.read_csv(folder / "straight" / "runs.csv").set_index("run").loc[RUN, "test_accuracy"]
    return folder / "results", float(straight)


def _cut_in_half(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _folder_instead(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _file_instead(path: Path) -> None:
    shutil.rmtree(path)
    path.write_text("not a folder")


# (how it is damaged, what the warning says, what the run then does)
DAMAGES: dict[str, tuple[Callable[[Path], None], str, str]] = {
    "state file cut in half": (lambda c: _cut_in_half(c / "epoch-0002" / STATE),
                               "its checkpoint of epoch 2 in {c} could not be restored", "scratch"),
    "state file missing": (lambda c: (c / "epoch-0002" / STATE).unlink(),
                           "its checkpoint of epoch 2 in {c} could not be restored", "scratch"),
    "a folder in the state file's place": (lambda c: _folder_instead(c / "epoch-0002" / STATE),
                                           "its checkpoint of epoch 2 in {c} could not be restored", "scratch"),
    "loop.json missing": (lambda c: (c / "epoch-0002" / LOOP_STATE).unlink(),
                          "its checkpoint of epoch 2 in {c} is unreadable (FileNotFoundError", "scratch"),
    "loop.json garbage": (lambda c: (c / "epoch-0002" / LOOP_STATE).write_text("{\"epoch\": 2, "),
                          "its checkpoint of epoch 2 in {c} is unreadable (JSONDecodeError", "scratch"),
    "LATEST names an epoch that is gone": (lambda c: shutil.rmtree(c / "epoch-0002"),
                                           f"its checkpoint's {LATEST} names epoch 2, whose folder in {{c}} is gone",
                                           "scratch"),
    "LATEST garbage": (lambda c: (c / LATEST).write_text("\x00garbage"),
                       f"its checkpoint's {LATEST} in {{c}} is unreadable", "epoch 2"),
    "the epoch folder a file": (lambda c: _file_instead(c / "epoch-0002"),
                                "its checkpoint of epoch 2 in {c} is unreadable (NotADirectoryError", "scratch"),
    "the run's checkpoint folder a file": (lambda c: _file_instead(c), "its checkpoint {c} is not a folder",
                                           "scratch"),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_checkpoint_is_said_once_and_the_run_trains_in_the_same_invocation(stopped, tmp_path, mnist_dir,
                                                                                    capsys, damage):
    results, straight_accuracy = stopped
    shutil.copytree(results.parent / "specs", tmp_path / "specs")
    shutil.copytree(results, tmp_path / "results")
    (checkpoint,) = (tmp_path / "results" / CHECKPOINTS).iterdir()
    damage_it, warning, then = DAMAGES[damage]
    damage_it(checkpoint)
    capsys.readouterr()

    assert invoke(tmp_path, mnist_dir) == 0
    err = " ".join(capsys.readouterr().err.split())
    expected = f"warning: {RUN}: {warning.format(c=checkpoint)}"
    assert expected in err and err.count(f"warning: {RUN}:") == 1 and "Traceback" not in err, err
    if then == "scratch":
        assert err.count("trained from scratch") == 1
    row = pd.read_csv(tmp_path / "results" / "runs.csv", keep_default_na=False).set_index("run").loc[RUN]
    assert row["status"] == "completed" and warning.format(c=checkpoint) in row["reason"]
    if then == "scratch":
        assert "resumed after" not in row["reason"] and "epoch 1/3" in err
        assert row["test_accuracy"] == straight_accuracy  # a new model: the same run as one never stopped
    else:
        assert "resumed after epoch 2" in row["reason"] and "epoch 1/3" not in err
    assert not (tmp_path / "results" / CHECKPOINTS).exists()  # removed once the run completed
