"""Time to train as MLPerf reports it: per seed, converged count, median, mean with its CI, and the score."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lenet_bench.results.time_to_train import mlperf_score, time_to_train_markdown, time_to_train_table


def test_the_mlperf_score_drops_the_fastest_and_the_slowest():
    assert mlperf_score([5.0, 9.0, 6.0, 7.0, 8.0]) == pytest.approx(7.0)
    assert mlperf_score([5.0, 6.0, math.inf, 7.0, 8.0]) == pytest.approx(7.0)  # one failure is the slowest, dropped
    assert math.isnan(mlperf_score([5.0, math.inf, math.inf, 7.0, 8.0]))  # two: no score
    assert math.isnan(mlperf_score([5.0, 6.0]))  # too few seeds


def _runs(times, backend="torch", target=0.99, hardware="AMD EPYC, 2 cores"):
    return [{"run": f"fast/{backend}/cpu/seed{seed}", "spec": "fast", "base_spec": "fast", "overrides": "",
             "backend": backend, "device": "cpu", "seed": seed, "status": "completed", "test_accuracy": 0.99,
             "target_accuracy": target, "time_to_target_s": t, "epochs_to_target": None if t is None else 2,
             "hardware": hardware, "timing": "quiet"} for seed, t in enumerate(times)]


def test_seeds_that_never_reach_the_target_are_counted_not_averaged():
    frame = pd.DataFrame(_runs([5.0, 6.0, None, 7.0, 8.0]) + _runs([3.0, 4.0, 5.0], backend="keras")
                         + [dict(_runs([1.0])[0], spec="other", run="other/torch/cpu/seed0", target_accuracy=None)])
    table = time_to_train_table(frame).set_index("backend")
    torch = table.loc["torch"]
    assert (torch["seeds"], torch["converged"]) == (5, 4)
    assert torch["median_s"] == pytest.approx(6.5) and torch["mean_s"] == pytest.approx(6.5)
    assert torch["mlperf_s"] == pytest.approx(7.0) and math.isinf(torch["times"][2])
    assert torch["ci_low_s"] < 6.5 < torch["ci_high_s"]
    assert list(table.index) == ["keras", "torch"]  # the spec without a target is not timed to one
    text = time_to_train_markdown(table.reset_index())
    assert "2: not reached" in text and "4/5" in text


def test_timings_of_other_hardware_are_never_pooled():
    frame = pd.DataFrame(_runs([5.0, 6.0, 7.0]) + _runs([50.0, 60.0, 70.0], hardware="other CPU, 1 core"))
    table = time_to_train_table(frame)
    assert sorted(table["mean_s"]) == [pytest.approx(6.0), pytest.approx(60.0)]


def test_rows_recorded_before_targets_were_a_column_take_them_from_their_spec():
    from dataclasses import dataclass
    from types import SimpleNamespace

    @dataclass
    class Variant:
        name: str
        spec: object

    frame = pd.DataFrame(_runs([5.0, 6.0, 7.0], target=None))
    assert time_to_train_table(frame).empty
    spec = SimpleNamespace(train=SimpleNamespace(target_accuracy=0.99))
    table = time_to_train_table(frame, [Variant("fast", spec)])
    assert table.loc[0, "target"] == 0.99 and table.loc[0, "counted"] == "training only"


def test_eval_every_evaluates_every_nth_epoch_and_the_last_and_time_to_target_counts_only_those():
    from lenet_bench.spec.schema import TrainSpec
    from lenet_bench.training.loop import time_to_target, train_epochs
    from lenet_bench.training.result import SilentProgress

    class Clock:  # one second per reading pair: every epoch and every evaluation takes 1 s
        def start(self) -> None: ...

        def read(self) -> float:
            return 1.0

    evaluated: list[int] = []
    epochs_done: list[int] = []

    def take_sums() -> tuple[float, int]:  # read once at the end of every epoch
        epochs_done.append(len(epochs_done) + 1)
        return 0.0, 0

    def validate() -> tuple[float, float]:
        evaluated.append(len(epochs_done))
        return 0.1, 0.5 + 0.1 * len(epochs_done)  # accuracy grows with the epochs trained

    cfg = TrainSpec(epochs=7, batch_size=4, eval_every=3)
    outcome = train_epochs(cfg, 8, 0, None, Clock(), SilentProgress(), run_steps=lambda batches, lrs: None,
                           take_sums=take_sums, validate=validate, warmup_steps=0)
    assert evaluated == [3, 6, 7]  # after epochs 3 and 6, and the last
    assert [r.val_accuracy is not None for r in outcome.history] == [False, False, True, False, False, True, True]
    assert [r.eval_seconds for r in outcome.history] == [0, 0, 1, 0, 0, 1, 1]
    # 0.5 + 0.1 x 6 = 1.1 first at epoch 6: six epochs of training and the two evaluations made until then.
    assert time_to_target(outcome.history, 1.0) == (6.0 + 2.0, 6)
    with pytest.raises(ValueError, match="eval_every"):
        TrainSpec(eval_every=0)
