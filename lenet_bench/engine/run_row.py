"""A run's row in results/ and MLflow: one function of what the run is (its `Job`) and what came of it (its
`JobResult`). The recorder logs and writes the rows made here; it makes none of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lenet_bench.results.row import ResultRow, Status, timing_condition
from lenet_bench.training.loop import time_to_target

if TYPE_CHECKING:
    from lenet_bench.engine.baseline import BaselineResult
    from lenet_bench.engine.execute import JobResult
    from lenet_bench.engine.plan import Job
    from lenet_bench.training.result import RunResult

# Accuracies as a person reads them, rounded where they are logged (MLflow and runs.csv alike): a backend's
# float32 accuracy of 9,891 hits in 10,000 is 0.98909998, 98.9099979 as a percentage. float32 holds about 7
# significant digits: past the 6th decimal of a fraction (the 4th of a percentage) is its noise, not the count.
FRACTION_DECIMALS, POINTS_DECIMALS = 6, 4


def job_row(job: Job) -> ResultRow:
    """What a run is, before anything about how it went: its identity, its spec's design choices and sizes, and
    what it is judged against."""
    spec = job.spec
    summary = spec.summary()
    return ResultRow.of(
        job.identity,
        params=summary.params, flops=summary.flops, train_flops=summary.train_flops, epochs=spec.train.epochs,
        batch_size=spec.train.batch_size,
        # A run that the command line changed is not the spec's run: its expectation does not apply.
        min_test_accuracy=None if job.overrides else spec.expect.min_test_accuracy,
        reference_accuracy=spec.reference.test_accuracy if spec.reference else None,
        reference_notes=(spec.reference.notes or "") if spec.reference else "",
        target_accuracy=spec.train.target_accuracy,
    ).update(**spec.axes())


def outcome_row(job: Job, result: JobResult, *, executor: str, concurrent_workers: int, code_version: str,
                run_id: str, finished_at: str) -> ResultRow:
    """The row of a job that was decided and executed (failed or completed, not skipped): `job_row` with where it
    ran and, when it completed, its numbers judged against its expectation."""
    p = result.provenance
    row = job_row(job).update(
        fingerprint=job.fingerprint, code_version=code_version, mlflow_run_id=run_id, finished_at=finished_at,
        executor=executor, concurrent_workers=concurrent_workers, cores=p.cores, host=p.host, hardware=p.hardware,
        cpu_model=p.cpu_model, gpu_name=p.gpu_name, gpu_driver=p.gpu_driver, cuda_version=p.cuda_version,
        framework_version=p.framework_version)
    if result.status is Status.FAILED or result.result is None:
        return row.update(status=Status.FAILED, reason="; ".join([result.reason or "no result", *result.notes]),
                          met_expectation=None)
    other = result.other_load_cores
    # The run's own numbers (its framework's version as the backend gave it among them) over the provenance's.
    row = judged(row.update(status=Status.COMPLETED, **result_fields(job, result.result, result.baseline),
                            data_prepare_seconds=result.data_prepare_seconds,
                            peak_rss_mb=result.peak_rss_mb, rss_at_start_mb=result.rss_at_start_mb,
                            other_load_cores=other, timing=timing_condition(other)))
    if result.notes:
        row = row.update(reason="; ".join(filter(None, [row.reason, *result.notes])))
    return row


def judged(row: ResultRow) -> ResultRow:
    """met_expectation against the row's expectation (none for runs with overrides)."""
    return row.update(met_expectation=row.meets(row.min_test_accuracy))


def result_fields(job: Job, result: RunResult, baseline: BaselineResult | None) -> dict[str, object]:
    """The numbers of a completed run, as ResultRow fields."""
    summary = job.spec.summary()
    accuracy = fraction(result.test_accuracy)
    base = fraction(baseline.test_accuracy) if baseline else None
    fields: dict[str, object] = {
        "test_accuracy": accuracy, "test_accuracy_pct": points(accuracy), "test_error_pct": points(1 - accuracy),
        "test_loss": result.test_loss, "baseline_accuracy": base,
        "delta_to_baseline": fraction(accuracy - base) if base is not None else None,
        "gap_to_baseline_pp": points(accuracy - base) if base is not None else None,
        "epochs": len(result.history),
        "train_seconds": sum(r.seconds for r in result.history),
        "warmup_seconds": result.warmup_seconds, "steady_seconds": result.steady_seconds,
        "train_images_per_sec": result.train_images_per_second,
        "achieved_gflops": result.train_images_per_second * summary.train_flops / 1e9,
        "data_seconds": result.data_seconds, "eval_seconds": result.eval_seconds,
        "final_train_accuracy": fraction(result.history[-1].train_accuracy),
        "final_val_accuracy": None if (last := result.history[-1].val_accuracy) is None else fraction(last),
        "framework_version": result.framework_version,
    }
    if result.resumed_from_epoch:
        # Its timings span two processes: the epochs before the stop count, and the warm-up was paid twice.
        fields["reason"] = f"resumed after epoch {result.resumed_from_epoch} (interrupted before)"
    for name in ("inference_images_per_sec", "latency_p50_ms", "latency_p95_ms", "peak_gpu_mb"):
        if name in result.timings:
            fields[name] = result.timings[name]
    if "inference_batch" in result.timings:
        fields["inference_batch"] = int(result.timings["inference_batch"])
    target = job.spec.train.target_accuracy
    reached = time_to_target(result.history, target) if target else None
    if reached:
        fields["time_to_target_s"], fields["epochs_to_target"] = reached
    return fields


def fraction(value: float) -> float:
    """An accuracy (0-1) as logged: rounded to FRACTION_DECIMALS."""
    return round(float(value), FRACTION_DECIMALS)


def points(value: float) -> float:
    """An accuracy or a difference of two (0-1) in percentage points, as logged: 98.91, not 98.9099979."""
    return round(100 * float(value), POINTS_DECIMALS)

