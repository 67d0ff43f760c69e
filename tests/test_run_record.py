"""A run's identity and its row: the name, setup and seed group spelled once (results/identity.py), and the
console's line about a run computed from the row's numbers."""

from __future__ import annotations

import pytest

from lenet_bench.results.identity import RunIdentity
from lenet_bench.results.row import ResultRow, Status


def test_an_identity_names_its_run_setup_and_seed_group_and_a_row_gives_it_back():
    plain = RunIdentity("lenet5-relu", "lenet5", "", "torch", "cpu", 2)
    changed = RunIdentity("lenet5-relu", "lenet5", "epochs=1,max_steps=50", "keras", "gpu", 0)
    assert (plain.name, plain.setup, plain.seed_group) == (
        "lenet5-relu/torch/cpu/seed2", "lenet5-relu", "lenet5-relu/torch/cpu")
    assert (changed.name, changed.setup, changed.seed_group) == (
        "lenet5-relu@epochs=1,max_steps=50/keras/gpu/seed0", "lenet5-relu@epochs=1,max_steps=50",
        "lenet5-relu@epochs=1,max_steps=50/keras/gpu")
    for identity in (plain, changed):
        row = ResultRow.of(identity, params=61706)
        assert row.run == identity.name and row.identity == identity and row.setup == identity.setup
        assert row.params == 61706


def _completed(**values) -> ResultRow:
    return ResultRow.of(RunIdentity("lenet5", "lenet5", "", "torch", "cpu", 0), status=Status.COMPLETED,
                        test_accuracy=0.9891, baseline_accuracy=0.9214, gap_to_baseline_pp=6.77, train_seconds=12.34,
                        min_test_accuracy=0.98, met_expectation=True, timing="quiet").update(**values)


@pytest.mark.parametrize(("row", "reused", "line"), [
    (_completed(), False, "  -> lenet5/torch/cpu/seed0: test accuracy 98.91%, baseline 92.14% (+6.77 pp), in 12.3 s "
                          "of training"),
    (_completed(), True, "  -> lenet5/torch/cpu/seed0: test accuracy 98.91%, baseline 92.14% (+6.77 pp), completed "
                         "before"),
    (_completed(test_accuracy=0.9712, gap_to_baseline_pp=4.98, met_expectation=False, timing="loaded"), False,
     "  -> lenet5/torch/cpu/seed0: test accuracy 97.12%, baseline 92.14% (+4.98 pp), in 12.3 s of training"
     "  [below the expected 98.00%]  [timed with other work on its cores]"),
    (_completed(baseline_accuracy=None, gap_to_baseline_pp=None), False,
     "  -> lenet5/torch/cpu/seed0: test accuracy 98.91%, in 12.3 s of training"),
    (_completed(status=Status.FAILED, test_accuracy=None, reason="diverged in epoch 2"), False,
     "  -> lenet5/torch/cpu/seed0: failed: diverged in epoch 2"),
    (_completed(status=Status.SKIPPED, test_accuracy=None, reason=""), False, "  -> lenet5/torch/cpu/seed0: skipped"),
])
def test_a_runs_line_says_what_its_row_holds(row, reused, line):
    assert row.outcome_line(reused) == line


def test_an_epoch_history_logged_as_series_reads_back_as_it_was():
    from lenet_bench.results.readback import history_from_series, history_series
    from lenet_bench.training.result import EpochRecord

    history = [EpochRecord(1, 0.9, 0.71, None, None, 3.5, 100, eval_seconds=0.0),
               EpochRecord(2, 0.4, 0.88, 0.35, 0.9, 3.25, 100, eval_seconds=0.5)]
    logged = history_series(history)
    assert logged["epoch_seconds"] == [(1, 3.5), (2, 3.25)] and logged["val_accuracy"] == [(2, 0.9)]
    read = history_from_series({metric: dict(points) for metric, points in logged.items()})
    assert [(r.epoch, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds, r.eval_seconds)
            for r in read] == [(1, 0.9, 0.71, None, None, 3.5, 0.0), (2, 0.4, 0.88, 0.35, 0.9, 3.25, 0.5)]


@pytest.mark.parametrize(("row", "expected", "meets"), [
    (_completed(test_accuracy=0.98), 0.98, True),  # at the expectation is meeting it
    (_completed(test_accuracy=0.9799), 0.98, False),
    (_completed(), None, None),  # nothing expected (a run the command line changed)
    (_completed(status=Status.FAILED, test_accuracy=None), 0.98, None),
    (_completed(status=Status.KILLED), 0.98, None),  # a number from an interrupted run is not judged
])
def test_a_row_meets_an_expectation_only_with_a_completed_runs_accuracy(row, expected, meets):
    assert row.meets(expected) is meets
