"""The estimate of how long runs take: measured speeds, looked up from the closest match."""

from __future__ import annotations

import math

import pytest

from lenet_bench.engine.estimate import SpeedBook, training_flops
from lenet_bench.engine.plan import RunOptions, plan_jobs
from lenet_bench.results.row import ResultRow, Status
from lenet_bench.spec import load_variants


def _row(spec: str, cores: int, gflops: float, backend: str = "torch", timing: str = "quiet") -> ResultRow:
    return ResultRow(run=f"{spec}/{backend}/cpu/seed0/{cores}", spec=spec, backend=backend, device="cpu",
                     status=Status.COMPLETED, achieved_gflops=gflops, cores=cores, timing=timing)


@pytest.fixture(scope="module")
def lenet5_job():
    [job] = plan_jobs(load_variants(["specs/lenet5.yaml"]),
                      RunOptions(only=("lenet5",), backends=("torch",), devices=("cpu",), seeds=(0,)))
    return job


def _seconds_at(book: SpeedBook, job, cores: int) -> float:
    return book.estimate(job, cores, work=1e12).seconds - book.overhead_s


def test_the_variants_own_speed_on_those_cores_comes_first(lenet5_job):
    book = SpeedBook([_row("lenet5", 2, 100.0), _row("lenet5", 1, 40.0), _row("other", 1, 10.0)])
    assert _seconds_at(book, lenet5_job, 1) == pytest.approx(1e12 / 40e9)
    assert "variant measured" in book.estimate(lenet5_job, 1).source


def test_another_core_count_is_scaled_by_variants_measured_on_both(lenet5_job):
    # lenet5 only on 2 cores; two other variants ran on both, at 0.6x and 0.8x on one core: x0.7.
    book = SpeedBook([_row("lenet5", 2, 100.0), _row("a", 2, 10.0), _row("a", 1, 6.0),
                      _row("b", 2, 50.0), _row("b", 1, 40.0), _row("small", 1, 1.0)])
    assert _seconds_at(book, lenet5_job, 1) == pytest.approx(1e12 / 70e9)
    assert "x0.70 for 1" in book.estimate(lenet5_job, 1).source


def test_without_pairs_the_backends_medians_give_the_scale(lenet5_job):
    # Nothing ran on both counts: the backend's median on 1 core (20) over its median on 2 (40).
    book = SpeedBook([_row("lenet5", 2, 100.0), _row("a", 2, 40.0), _row("b", 1, 20.0)])
    # The backend's 2-core median is over lenet5 and a: (100 + 40) / 2 = 70.
    assert _seconds_at(book, lenet5_job, 1) == pytest.approx(1e12 / (100.0 * 20.0 / 70.0 * 1e9))


def test_a_backend_median_is_the_last_resort_and_never_measured_is_nan(lenet5_job):
    book = SpeedBook([_row("a", 1, 20.0), _row("b", 1, 30.0)])
    assert _seconds_at(book, lenet5_job, 1) == pytest.approx(1e12 / 25e9)
    assert math.isnan(SpeedBook([_row("a", 1, 20.0, backend="keras")]).estimate(lenet5_job, 1).seconds)


def test_speeds_timed_under_load_count_only_where_nothing_quiet_was_measured(lenet5_job):
    book = SpeedBook([_row("lenet5", 1, 10.0, timing="loaded"), _row("lenet5", 1, 40.0)])
    assert _seconds_at(book, lenet5_job, 1) == pytest.approx(1e12 / 40e9)
    loaded_only = SpeedBook([_row("lenet5", 1, 10.0, timing="loaded")])
    assert _seconds_at(loaded_only, lenet5_job, 1) == pytest.approx(1e12 / 10e9)


def test_training_flops_are_images_times_epochs_times_flops_per_image(lenet5_job):
    spec = lenet5_job.spec
    images = int(60_000 * (1 - spec.data.validation_split))
    assert training_flops(lenet5_job) == images * spec.train.epochs * spec.summary().train_flops


def test_a_variant_never_measured_takes_the_speed_of_runs_of_its_batch_size():
    """A new one-image variant (the 1998 procedure) is estimated from one-image runs, on any cores, not from the
    backend's batched median, 40 times faster: `list` said 1m49s for a 39-minute run."""
    [job] = plan_jobs(load_variants(["paper1998/lecun1998.yaml"]),
                      RunOptions(only=("lecun1998-distortions",), backends=("torch",), devices=("cpu",), seeds=(0,)))
    assert job.spec.train.batch_size == 1
    one_image = [_row("lecun1998", 1, 0.9), _row("lecun1998-capped", 1, 0.7)]
    for row in one_image:
        row.batch_size = 1
    batched = [_row("lenet5", 2, 40.0), _row("lenet5-dense400", 2, 30.0)]
    book = SpeedBook(one_image + batched)
    assert _seconds_at(book, job, 2) == pytest.approx(1e12 / 0.8e9)  # the median of the one-image runs, 1 core
    assert book.estimate(job, 2).source.startswith("batch measured (2 run(s)")
    # Rows of old (no batch size) leave the batched median as before.
    assert _seconds_at(SpeedBook(batched), job, 2) == pytest.approx(1e12 / 35e9)
