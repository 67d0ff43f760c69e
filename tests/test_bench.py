"""The bench command on a tiny selection of real MNIST: every row measured or skipped with its reason."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pandas as pd
import pytest

from lenet_bench import bench
from lenet_bench.cli import main
from lenet_bench.results.row import Status
from lenet_bench.spec import load_variants

LENET5 = Path(__file__).resolve().parents[1] / "specs" / "lenet5.yaml"
TINY = ["--backend", "torch", "--steps", "3", "--repeats", "2", "--rounds", "2", "--batch-size", "16"]
POSITIVE_FIGURES = ("harness_images_per_sec", "harness_min", "harness_max", "reference_images_per_sec",
                    "harness_to_reference", "ceiling_gflops", "ceiling_images_per_sec", "fraction_of_ceiling",
                    "warmup_epoch_seconds", "inference_images_per_sec", "latency_p50_ms", "latency_p95_ms")
COLUMNS = ("variant", "backend", "device", "batch", "harness img/s", "min–max", "reference img/s", "ratio",
           "% of ceiling", "warm-up s", "infer img/s", "p50 ms", "p95 ms", "other load")


def run_bench(*argv: str) -> int:
    """The command as the CLI runs it: parse, load the specs, measure."""
    return main(["bench", *argv])


@pytest.fixture(scope="module")
def measured(tmp_path_factory, mnist_dir):
    """(exit code, the --json document, stderr, CSV rows) of one bench of LeNet-5 on torch, cpu and gpu."""
    csv = tmp_path_factory.mktemp("bench") / "bench.csv"
    stdout, stderr = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        patch.setattr(bench, "CEILING_SIZE", 512)  # a smaller product: the plumbing is under test, not the machine
        code = run_bench(str(LENET5), *TINY, "--device", "cpu", "--device", "gpu",
                         "--data-dir", str(mnist_dir), "--csv", str(csv), "--json")
    return code, json.loads(stdout.getvalue()), stderr.getvalue(), pd.read_csv(csv, keep_default_na=False,
                                                                               na_values=[""])


def test_exit_0_and_one_row_per_backend_and_device(measured):
    code, document, _, rows = measured
    assert code == 0
    assert rows[["variant", "backend", "device", "batch_size"]].values.tolist() == [
        ["lenet5", "torch", "cpu", 16], ["lenet5", "torch", "gpu", 16]]
    # --json gives the rows --csv writes (a missing number null there and an empty text "", both empty in the
    # CSV; the CSV reads steps, a count or "all", as text)
    def missing(value: object) -> bool:
        return value is None or value == "" or (isinstance(value, float) and math.isnan(value))

    assert [list(row) for row in document["rows"]] == [list(rows.columns)] * 2
    for given, written in zip(document["rows"], rows.to_dict(orient="records"), strict=True):
        for name, value in given.items():
            if missing(value) or missing(written[name]):
                assert missing(value) and missing(written[name]), name
            elif isinstance(value, float):
                assert value == pytest.approx(written[name]), name
            else:
                assert str(written[name]) == str(value), name
    (ceiling,) = document["ceilings"]
    assert ceiling["device"] == "cpu" and ceiling["gflops"] > 0
    cpu = document["rows"][0]
    assert cpu["ceiling_gflops"] == pytest.approx(ceiling["gflops"])


def test_the_table_prints_the_measured_rows(measured, capsys):
    from lenet_bench.cli.bench import print_table

    _, document, _, _ = measured
    print_table(document["rows"], full=False, steps=3, repeats=2, rounds=2)
    out = capsys.readouterr().out
    assert all(word in out for column in COLUMNS for word in column.split())  # rich may wrap a header
    cpu, gpu = document["rows"]
    cpu_line = next(line for line in out.splitlines() if "lenet5" in line and "cpu" in line)
    for shown in (f"{cpu['harness_images_per_sec']:,.0f}", f"{cpu['harness_to_reference']:.2f}x",
                  f"{100 * cpu['fraction_of_ceiling']:.1f}%"):
        assert shown in cpu_line, shown
    gpu_line = next(line for line in out.splitlines() if "lenet5" in line and "gpu" in line)
    assert gpu["status"] in gpu_line


def test_cpu_figures_are_positive_and_finite(measured):
    _, _, _, rows = measured
    cpu = rows[rows.device == "cpu"].iloc[0]
    assert cpu.status == Status.COMPLETED.value  # as a run's status, in the CSV
    for name in POSITIVE_FIGURES:
        assert math.isfinite(cpu[name]) and cpu[name] > 0, name
    assert (cpu.train_images, cpu.rounds) == (3 * 16, 2)  # 2 rounds of 2 timed epochs each
    assert cpu.fraction_of_ceiling == pytest.approx(cpu.harness_images_per_sec / cpu.ceiling_images_per_sec)


def test_unavailable_device_is_said_once_up_front_with_its_reason(measured):
    from lenet_bench.engine import hardware

    _, document, err, rows = measured
    if hardware.nvidia_driver_version():
        pytest.skip("an NVIDIA GPU is present: the gpu row was measured")
    reason = "no GPU on this machine (no NVIDIA driver found)"
    gpu = rows[rows.device == "gpu"].iloc[0]
    assert gpu.status == Status.SKIPPED.value and gpu.reason == reason
    assert math.isnan(gpu.harness_images_per_sec)
    assert document["rows"][1]["status"] == "skipped" and document["rows"][1]["harness_images_per_sec"] is None
    err = " ".join(err.split())  # rich wraps long lines
    assert f"skipping 1 bench row(s) of lenet5/torch/gpu: {reason}" in err
    assert "bench lenet5/torch/gpu" not in err, "a row that cannot run here is not announced"


def test_a_selection_matching_nothing_is_exit_2(capsys):
    assert run_bench(str(LENET5), "--only", "no-such-variant") == 2
    assert "no run matches" in capsys.readouterr().err


def test_steps_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_bench(str(LENET5), "--steps", "0")
    assert exit_info.value.code == 2 and "positive integer" in capsys.readouterr().err


def test_bench_spec_trains_a_warmup_epoch_plus_the_repeats():
    spec = load_variants([LENET5])[0].spec
    quick = bench.bench_spec(spec, bench.BenchSettings(steps=10, repeats=4, batch_size=32))
    assert (quick.train.epochs, quick.train.batch_size) == (5, 32)
    assert quick.train.optimizer == spec.train.optimizer and quick.model == spec.model
    assert (quick.data.subset, quick.data.validation_split) == (10 * 32, 0.0), "exactly the timed steps' images"
    default = bench.bench_spec(spec, bench.BenchSettings(repeats=4))
    assert default.train.batch_size == spec.train.batch_size
    full = bench.bench_spec(spec, bench.BenchSettings(full=True))
    assert full.train.epochs == spec.train.epochs and full.data == spec.data


def test_record_arithmetic():
    row = bench.BenchRow("v", "torch", "cpu", 128, train_flops=1_000_000, harness=[100.0, 300.0, 200.0],
                         reference=[50.0, 150.0, 100.0])
    record = row.record(ceiling=1e9)
    assert (record["harness_images_per_sec"], record["harness_min"], record["harness_max"]) == (200.0, 100.0, 300.0)
    assert record["harness_to_reference"] == 2.0  # one round: the ratio of the medians
    row.round_ratios = [1.2, 1.8, 1.4]
    record = row.record(ceiling=1e9)
    assert (record["harness_to_reference"], record["ratio_min"], record["ratio_max"], record["rounds"]) == (1.4, 1.2, 1.8, 3)
    assert record["ceiling_images_per_sec"] == 1000.0 and record["fraction_of_ceiling"] == 0.2
    assert math.isnan(row.record(ceiling=None)["fraction_of_ceiling"])


FULL_SPEC = """
name: small
description: --full on a small split
data: {subset: 3000, test_subset: 1000, validation_split: 0.1}
model: {conv: [{filters: 6}, {filters: 16}], dense: [32]}
train: {optimizer: {name: adam, lr: 0.003}, batch_size: 64, epochs: 3}
backends: [torch, keras]
devices: [cpu]
"""


def test_full_trains_the_spec_split_and_reports_both_accuracies(tmp_path, mnist_dir, capsys):
    (tmp_path / "small.yaml").write_text(FULL_SPEC)
    csv = tmp_path / "full.csv"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(bench, "CEILING_SIZE", 512)
        assert run_bench(str(tmp_path), "--full", "--data-dir", str(mnist_dir), "--csv", str(csv)) == 0
    rows = pd.read_csv(csv).set_index("backend")
    for backend in ("torch", "keras"):
        row = rows.loc[backend]
        # the spec's 2,700 training images (3,000 less 10% validation); the first epoch of 3 is the warm-up one
        assert (row.steps, row.repeats, row.train_images) == ("all", 2, 2700)
        assert row.harness_test_accuracy > 0.8 and row.reference_test_accuracy > 0.8, backend
    out = capsys.readouterr().out
    for backend in ("torch", "keras"):
        table_row = next(line for line in out.splitlines() if "small" in line and backend in line)
        row = rows.loc[backend]
        assert f"{row.harness_test_accuracy:.4f}" in table_row and f"{row.reference_test_accuracy:.4f}" in table_row
