"""overhead.md and the closing line count only this invocation's work: a run resumed from a checkpoint
brings the epochs another invocation trained in its history, and they are not this one's training;
data.augment's seconds (part of an epoch's) are a phase of their own, inside training."""

from __future__ import annotations

import dataclasses
import re
import time

import pandas as pd
import pytest
from test_driver import cli_run, workspace, write_spec  # noqa: F401 (fixture)

from lenet_bench.engine import phases
from lenet_bench.training.result import EpochRecord, RunResult

STEP_SECONDS, AUGMENT_SECONDS = 0.3, 0.1  # this invocation's epoch (2): its steps, and the augmentation within
EARLIER_SECONDS = 10_000.0  # epoch 1, trained (and timed) by the invocation that was stopped


def _record(epoch: int, seconds: float, augment: float = 0.0, eval_seconds: float = 0.0) -> EpochRecord:
    return EpochRecord(epoch, 2.3, 0.1, 2.3, 0.1, seconds, 100, seconds, eval_seconds, augment)


def _result(history: list[EpochRecord], resumed_from_epoch: int = 0) -> RunResult:
    return RunResult("noop", "cpu", "0", 1, history, 2.3, 0.1, None, 0.0, 0, 0.0, 0, 0.0, 0.0,  # type: ignore[arg-type]
                     resumed_from_epoch=resumed_from_epoch)


def test_a_resumed_run_counts_only_the_epochs_this_invocation_trained():
    history = [_record(1, EARLIER_SECONDS, eval_seconds=5.0), _record(2, 2.0, augment=0.5, eval_seconds=1.0)]
    split = phases.split_run({"data": 1.0, "backend.train": 4.0}, _result(history, resumed_from_epoch=1))
    assert split[phases.TRAINING] == pytest.approx(1.5) and split[phases.AUGMENTATION] == pytest.approx(0.5)
    assert split["validation evaluations"] == pytest.approx(1.0)
    assert split["test evaluation, inference timing"] == pytest.approx(1.0)  # the call's 4 s less 2 + 1
    assert sum(v for k, v in split.items() if k != "data") == pytest.approx(4.0)  # the call, all of it, once
    straight = phases.split_run({"backend.train": 4.0}, _result(history))  # never stopped: every epoch is its own
    assert straight[phases.TRAINING] == pytest.approx(EARLIER_SECONDS + 1.5)


def test_augmentation_is_inside_training_in_the_share_and_the_runs_named():
    run = phases.split_backend_call({"data": 1.0, "backend.train": 10.0}, train_seconds=8.0, eval_seconds=0.0,
                                    augment_seconds=3.0)
    assert list(run)[:2] == ["data", phases.TRAINING] and run[phases.TRAINING] == 5.0 and run[phases.AUGMENTATION] == 3.0
    table = phases.overhead_table([run], {}, wall_seconds=12.0, capacity=1)
    assert list(table["phase"])[:2] == [phases.TRAINING, phases.AUGMENTATION]
    assert phases.outside_training(table) == pytest.approx(4 / 12)  # data 1 + rest of the call 2 + unaccounted 1
    top = phases.runs_outside_training({"a": run})
    assert top.iloc[0]["training s"] == 8.0 and top.iloc[0]["outside training s"] == pytest.approx(3.0)
    assert phases.AUGMENTATION not in top.iloc[0]["largest"]
    text = phases.overhead_markdown(table, 12.0, 1, 1, top)
    assert "Outside training: 33.3%." in text and f"| {phases.AUGMENTATION} " in text
    without = phases.split_backend_call({"backend.train": 10.0}, train_seconds=8.0, eval_seconds=0.0)
    assert phases.AUGMENTATION not in without  # no data.augment: no row of zeros


def _phase_seconds(text: str) -> dict[str, float]:
    rows = [line.split("|")[1:3] for line in text.split("## The")[0].splitlines() if line.startswith("| ")]
    return {name.strip(): float(seconds.replace(",", "")) for name, seconds in rows[1:]}  # the header row left out


def test_after_a_resume_overhead_md_and_the_closing_line_count_this_invocations_epochs(
        workspace, mnist_dir, noop, capsys, monkeypatch):
    """Each run comes back resumed after epoch 1 (10,000 s, trained before), and trains epoch 2 here for
    0.3 s, 0.1 s of it augmentation: 0.6 s of training for the two runs, never 20,000 s in a few seconds' wall."""
    trained = noop.train

    def resumed(model, spec, data, seed, device, progress, max_steps_per_epoch=None, checkpoint=None):
        result = trained(model, spec, data, seed, device, progress, max_steps_per_epoch)
        time.sleep(STEP_SECONDS)  # the epoch's time is spent, as the record says
        history = [_record(1, EARLIER_SECONDS), _record(2, STEP_SECONDS, augment=AUGMENT_SECONDS)]
        return dataclasses.replace(result, history=history, resumed_from_epoch=1)

    monkeypatch.setattr(noop, "train", resumed)
    write_spec(workspace)
    assert cli_run(workspace, mnist_dir, "--device", "cpu") == 0
    closing = re.search(r"time outside training: (-?[\d.]+)% of (\S+)", capsys.readouterr().err)
    assert closing, "the closing line"
    text = (workspace / "results" / "overhead.md").read_text()
    seconds = _phase_seconds(text)
    assert seconds[phases.TRAINING] == pytest.approx(2 * (STEP_SECONDS - AUGMENT_SECONDS), abs=0.05)
    assert seconds[phases.AUGMENTATION] == pytest.approx(2 * AUGMENT_SECONDS, abs=0.05)
    stated = re.search(r"([\d,.]+) s of wall time", text)
    assert stated, text
    wall = float(stated.group(1).replace(",", ""))
    # The file rounds the wall time (3.26 s reads 3.3 s): the share it implies is a range, not a point.
    decimals = len(stated.group(1).partition(".")[2])
    half_unit = 0.5 * 10 ** -decimals
    trained = seconds[phases.TRAINING] + seconds[phases.AUGMENTATION]
    lowest, highest = (100 * (1 - trained / (wall + sign * half_unit)) for sign in (-1, 1))
    assert 0 < float(closing.group(1)) < 100
    assert lowest - 0.1 <= float(closing.group(1)) <= highest + 0.1  # the line and the file say the same
    assert f"Outside training: {closing.group(1)}%." in text
    runs = pd.read_csv(workspace / "results" / "runs.csv")
    assert list(runs["train_seconds"]) == [pytest.approx(EARLIER_SECONDS + STEP_SECONDS)] * 2  # a run's own: all epochs
